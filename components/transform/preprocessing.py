"""The tensorflow-transform preprocessing_fn: what the model sees, computed the same way in
training and in serving (the transform graph is exported inside the serving SavedModel).

- Ranking features: log1p first where the schema says so (counts, prices), then z-scored with
  the statistics of the training split (the analyzers only ever see the training split).
  Optional features missing from a row are imputed with the training mean (z = 0).
- Categorical product fields: a vocabulary each (lower-cased), one out-of-vocabulary bucket.
- The market, when the schema declares markets: a vocabulary too (`market_id`); a log without
  markets has no `market_id` (the model reads market 0 for every row).
- Text: the query (lower-cased, zero-width characters removed, whitespace collapsed:
  `query_text`), and one product text built from title, type, brand, color and gender
  (empty fields skipped); tokenization happens in the model's input pipeline.
- Labels pass through, and each task's count per impression (`<task>_rate`, the soft
  training target); serving drops them (the transform graph is pruned to its inputs).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from contract import schema as S

PRODUCT_TEXT_FIELDS = (S.TITLE, S.PRODUCT_TYPE, S.BRAND, S.COLOR, S.GENDER)
PRODUCT_TEXT_SEPARATOR = " | "
VOCAB_OOV_BUCKETS = 1


def query_text(query: tf.Tensor) -> tf.Tensor:
    """The query as the model reads it: ingest's normalisation (split.normalize_query) with
    the steps core TensorFlow ops offer, so that TF Serving's stock binary runs it: lower-case
    (Unicode), format characters (zero-width joiners and spaces, soft hyphens, byte order
    marks) removed, control characters and whitespace runs as one space, ends stripped.
    Unlike ingest's key it applies no NFKC, for which there is no core op."""
    text = tf.strings.lower(query, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"\p{Cf}", "")
    return tf.strings.strip(tf.strings.regex_replace(text, r"[\p{Cc}\s]+", " "))


def _product_text(inputs: dict) -> tf.Tensor:
    fields = tf.stack([tf.strings.strip(inputs[c]) for c in PRODUCT_TEXT_FIELDS], axis=1)
    non_empty = tf.ragged.boolean_mask(fields, tf.strings.length(fields) > 0)
    return tf.strings.reduce_join(non_empty, axis=1, separator=PRODUCT_TEXT_SEPARATOR)


def _zscored(value: tf.Tensor | tf.SparseTensor, log1p: bool) -> tf.Tensor:
    """z-score of a ranking feature, float32. The statistics are accumulated in float64: Beam
    combines the partial sums of its bundles in no fixed order, and in float32 that order
    shows in the last bits of the z-scores (and so in the trained model); in float64 it
    does not survive the rounding to float32."""
    if isinstance(value, tf.SparseTensor):
        values = tf.cast(value.values, tf.float64)
        if log1p:
            values = tf.math.log1p(values)
        z = tft.scale_to_z_score(tf.SparseTensor(value.indices, values, value.dense_shape))
        dense = tf.sparse.to_dense(
            tf.SparseTensor(z.indices, tf.cast(z.values, tf.float32), [tf.shape(value)[0], 1]),
            default_value=0.0,
        )
        return tf.reshape(dense, [-1])
    value = tf.cast(value, tf.float64)
    if log1p:
        value = tf.math.log1p(value)
    return tf.cast(tft.scale_to_z_score(value), tf.float32)


def preprocessing_fn(inputs: dict, raw_schema: S.RawSchema) -> dict:
    """Bind `raw_schema` with functools.partial before handing it to tensorflow-transform."""
    outputs: dict = {
        S.QUERY: query_text(inputs[S.QUERY]),
        S.PRODUCT_ID: inputs[S.PRODUCT_ID],
        S.PRODUCT_TEXT: _product_text(inputs),
    }
    zscores = []
    for f in raw_schema.ranking_features:
        z = _zscored(inputs[f.name], f.log1p)
        outputs[S.zscore_name(f.name)] = z
        zscores.append(z)
    outputs[S.WIDE] = tf.stack(zscores, axis=1)
    for column in S.CATEGORICAL_COLUMNS:
        outputs[S.vocab_id_name(column)] = tft.compute_and_apply_vocabulary(
            tf.strings.lower(tf.strings.strip(inputs[column])),
            num_oov_buckets=VOCAB_OOV_BUCKETS,
            vocab_filename=S.vocab_name(column),
        )
    if S.MARKET in inputs:
        outputs[S.MARKET_ID] = tft.compute_and_apply_vocabulary(
            tf.strings.lower(tf.strings.strip(inputs[S.MARKET])),
            num_oov_buckets=VOCAB_OOV_BUCKETS,
            vocab_filename=S.vocab_name(S.MARKET),
        )
    # Training-only columns (absent from serving requests): the labels, and the logged display
    # position for position-bias-aware training.
    for label in (*raw_schema.task_names, S.POSITION):
        if label in inputs:
            outputs[label] = inputs[label]
    if S.IMPRESSIONS in inputs:
        # The impressions too: the relevance task's label smooths each pair's click rate by
        # how often it was shown (components/transform/relevance.py).
        outputs[S.IMPRESSIONS] = inputs[S.IMPRESSIONS]
        impressions = tf.maximum(tf.cast(inputs[S.IMPRESSIONS], tf.float32), 1.0)
        for task in raw_schema.tasks:
            count = tf.cast(inputs[task.count], tf.float32)
            outputs[S.rate_name(task.name)] = tf.clip_by_value(count / impressions, 0.0, 1.0)
    return outputs
