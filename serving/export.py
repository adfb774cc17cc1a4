"""Export the trained ranker as a SavedModel that TF Serving can serve on raw features.

The graph carries the tensorflow-transform graph (z-scores, vocabularies, product text) and
the tokenizer, so a client sends the same raw fields the logs have. Signatures:

- `serving_default`: named raw tensors, one entry per (query, product) pair: `query`,
  `product_id`, `title`, `product_type`, `brand`, `color`, `gender` (string [N]) and each
  ranking feature (float32 [N]; NaN marks a missing value of an optional feature).
- `score_examples`: `examples`, serialized raw `tf.Example`s as ingest writes them (for batch
  scoring and evaluation).

Both return `click`, `atc`, `purchase` (P(click), P(click, add-to-cart),
P(click, add-to-cart, purchase)) and `score`, their weighted sum (weights fixed at export).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf
import tensorflow_transform as tft

from components import schema as S
from components.train.inputs import to_model_inputs
from components.transform.preprocessing import raw_feature_spec, serving_feature_spec

EXPORT_INFO_FILE = "mlpr_export.json"
OUTPUT_KEYS = (*S.TASKS, "score")


def _signature_spec(raw_schema: S.RawSchema) -> dict:
    spec = {}
    for name, feature in serving_feature_spec(raw_schema).items():
        dtype = tf.string if feature.dtype == tf.string else tf.float32
        spec[name] = tf.TensorSpec([None], dtype, name=name)
    return spec


def export_serving_model(
    model: keras.Model,
    preprocessor: keras.layers.Layer | None,
    tft_output: tft.TFTransformOutput,
    raw_schema: S.RawSchema,
    export_dir: str,
    score_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> str:
    """Write the serving SavedModel to `export_dir` and return it."""
    if len(score_weights) != len(S.TASKS):
        raise ValueError(f"score_weights needs {len(S.TASKS)} values, got {score_weights}")
    tft_layer = tft_output.transform_features_layer()
    optional = [f.name for f in raw_schema.ranking_features if not f.required]
    weights = tf.constant(score_weights, dtype=tf.float32)

    model_inputs = list(model.input)  # the input names (dict-input functional models)
    archive = keras.export.ExportArchive()
    archive.track(model)
    if preprocessor is not None:  # None: a model on the wide features only (XGBoost)
        archive.track(preprocessor)
    archive.track(tft_layer)

    def score_transformed(raw: dict) -> dict:
        transformed = tft_layer(raw)
        inputs = to_model_inputs(transformed, preprocessor)
        outputs = model({name: inputs[name] for name in model_inputs}, training=False)
        probs = {t: tf.reshape(outputs[t], [-1]) for t in S.TASKS}
        stacked = tf.stack([probs[t] for t in S.TASKS], axis=1)
        probs["score"] = tf.linalg.matvec(stacked, weights)
        return probs

    def serve_raw(features: dict) -> dict:
        raw = dict(features)
        for name in optional:  # NaN marks a missing value: sparse, as the transform expects
            raw[name] = _nan_to_sparse(features[name])
        return score_transformed(raw)

    parse_spec = raw_feature_spec(raw_schema, with_labels=False)

    def serve_examples(examples: tf.Tensor) -> dict:
        return score_transformed(tf.io.parse_example(examples, parse_spec))

    archive.add_endpoint(
        "serving_default", serve_raw, input_signature=[_signature_spec(raw_schema)]
    )
    archive.add_endpoint(
        "score_examples",
        serve_examples,
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
    )
    archive.write_out(export_dir, verbose=False)
    info = {
        "tasks": list(S.TASKS),
        "outputs": list(OUTPUT_KEYS),
        "score_weights": dict(zip(S.TASKS, map(float, score_weights), strict=True)),
        "ranking_features": list(raw_schema.feature_names),
        "optional_features": optional,
    }
    with tf.io.gfile.GFile(os.path.join(export_dir, EXPORT_INFO_FILE), "w") as fh:
        fh.write(json.dumps(info, indent=2))
    return export_dir


def _nan_to_sparse(value: tf.Tensor) -> tf.SparseTensor:
    """A [N] float tensor with NaN for missing -> a [N, 1] SparseTensor of the present values."""
    column = tf.reshape(value, [-1, 1])
    indices = tf.where(tf.logical_not(tf.math.is_nan(column)))
    return tf.SparseTensor(
        indices, tf.gather_nd(column, indices), tf.shape(column, out_type=tf.int64)
    )
