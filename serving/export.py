"""Export the trained ranker as a SavedModel that TF Serving serves on raw features.

The graph carries the tensorflow-transform graph (z-scores, vocabularies, product text), the
tokenizer and, for text rankers, the pre-computed product catalog. Signatures (all inputs
are 1-D, one entry per candidate product, except where said):

- `serving_default`, ranking on raw fields: `query` (string: one entry for all candidates,
  or one per candidate), `market` when the schema declares markets (the same), `product_id`, `title`, `product_type`, `brand`, `color`, `gender`
  (string [N]) and each ranking feature (float32 [N]; NaN marks a missing value of an
  optional feature). Each distinct query of a request is encoded once, not once per
  candidate (and TF Serving's batching, which concatenates requests, keeps that true).
- `rank_precomputed`: `query`, `product_id` and the ranking features; psi(i) and the
  categorical ids come from the catalog table computed at export (the paper's product
  pre-computing). An id outside the catalog fails the request with INVALID_ARGUMENT naming
  it; there is no fallback (send such products through `serving_default`).
- `encode_products`: the product fields -> `product_embedding` (float32 [N, d], psi(i)),
  for batch jobs that pre-compute embeddings.
- `score_examples`: `examples`, serialized raw `tf.Example`s as ingest writes them (batch
  scoring and evaluation); the same graph as `serving_default`, and the same features: an
  example needs no more than `serving_default` takes (no `position`, no `description`).

The ranking signatures return `click`, `atc`, `purchase` (P(click), P(click, add-to-cart),
P(click, add-to-cart, purchase)) and `score`, their weighted sum (weights fixed at export).
A model without text (the XGBoost baseline) has only `serving_default` and `score_examples`:
product pre-computing does not apply to it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from contract import schema as S
from contract.features import serving_feature_spec
from model.ranker import categorical_input_names
from model.scorer import folded_scorer
from serving.first_layer import SplitScorer
from serving.product_table import CATEGORY_IDS, PRODUCT_TERMS, build_product_table
from serving.signatures import (
    ENCODE_PRODUCTS,
    PRODUCT_EMBEDDING,
    PRODUCT_FIELDS,
    RANK_PRECOMPUTED,
    SCORE,
    SCORE_EXAMPLES,
    SERVING_DEFAULT,
    output_keys,
)
from serving.warmup import write_warmup_requests

EXPORT_INFO_FILE = "mlpr_export.json"
ENCODE_BATCH = 128


# Inputs of the whole request: one entry for every candidate, or one per candidate.
REQUEST_INPUTS = (S.QUERY, S.MARKET)


def _spec(name: str, dtype: tf.DType) -> tf.TensorSpec:
    # The query and the market may be a scalar or a vector; everything else is one entry per
    # candidate.
    return tf.TensorSpec(None if name in REQUEST_INPUTS else [None], dtype, name=name)


def _raw_dtypes(raw_schema: S.RawSchema) -> dict[str, tf.DType]:
    return {
        name: tf.string if feature.dtype == tf.string else tf.float32
        for name, feature in serving_feature_spec(raw_schema).items()
    }


def _signature(raw_schema: S.RawSchema, names) -> dict:
    dtypes = _raw_dtypes(raw_schema)
    return {name: _spec(name, dtypes[name]) for name in names}


def export_serving_model(
    model: keras.Model,
    preprocessor: keras.layers.Layer | None,
    tft_output: tft.TFTransformOutput,
    raw_schema: S.RawSchema,
    export_dir: str,
    score_weights: Sequence[float] = (),
    catalog_files: list[str] | None = None,
    product_vectors=None,
    product_terms: bool = True,
    precision: str = "float32",
) -> str:
    """Write the serving SavedModel (with its warmup requests) to `export_dir`; return it.

    `score_weights`: the weight of each task's probability (the schema's tasks, in funnel
    order) in the ranking score; empty: 1 each.
    `catalog_files`: transformed TFRecords whose distinct products make the pre-computed
    catalog of `rank_precomputed` (text rankers only; None: no pre-computed signatures).
    `product_vectors`: product texts -> psi(i), when the train step has them cheaper than
    the product encoder (the frozen encoder's cached outputs); None: the product encoder.
    `product_terms`: also store each catalog product's first-layer terms of the scorer
    (serving/first_layer.py; about 2,000 floats per product for MLPR's default experts),
    so that `rank_precomputed` computes only the query's and the pair's; False: store psi(i)
    and the categorical ids only (256 floats and 4 ids per product), for large catalogs.
    `precision`: what the scorer's layers after the split first layer compute in
    ("float32", or "mixed_bfloat16"; inputs, outputs and the catalog stay float32).
    """
    tasks = raw_schema.task_names
    score_weights = tuple(score_weights) or (1.0,) * len(tasks)
    if len(score_weights) != len(tasks):
        raise ValueError(
            f"score_weights needs one value per task {list(tasks)}, got {score_weights}"
        )
    graph = _ServingGraph(model, preprocessor, tft_output, raw_schema, score_weights, precision)
    table = None
    if preprocessor is not None and catalog_files:
        encode = product_vectors or graph.encode_catalog_texts
        terms = graph.catalog_terms if product_terms else None
        table = build_product_table(catalog_files, tft_output, encode, terms)

    archive = keras.export.ExportArchive()
    archive.track(model)
    if preprocessor is not None:  # None: a model on the wide features only (XGBoost)
        if not preprocessor.built:  # e.g. every text came from the train step's cache
            preprocessor(tf.constant([""]), tf.constant([""]))
        archive.track(preprocessor)
    archive.track(graph.tft_layer)
    if table is not None:
        archive.track(table)
    if preprocessor is not None:
        archive.track(graph.split)

    names = list(_raw_dtypes(raw_schema))
    # What serving_default takes, parsed from each example: the logged position and the
    # description (training-only) are not required, and an example that has them still parses.
    parse_spec = serving_feature_spec(raw_schema)
    archive.add_endpoint(
        SERVING_DEFAULT, graph.rank_raw, input_signature=[_signature(raw_schema, names)]
    )
    archive.add_endpoint(
        SCORE_EXAMPLES,
        lambda examples: graph.score(
            _examples_checked(tf.io.parse_example(examples, parse_spec), raw_schema)
        ),
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
    )
    signatures = [SERVING_DEFAULT, SCORE_EXAMPLES]
    if preprocessor is not None:
        archive.add_endpoint(
            ENCODE_PRODUCTS,
            graph.encode_products,
            input_signature=[_signature(raw_schema, PRODUCT_FIELDS)],
        )
        signatures.append(ENCODE_PRODUCTS)
    if table is not None:
        market = [S.MARKET] if raw_schema.markets else []
        precomputed = [S.QUERY, *market, S.PRODUCT_ID, *raw_schema.feature_names]
        archive.add_endpoint(
            RANK_PRECOMPUTED,
            lambda features: graph.rank_precomputed(features, table),
            input_signature=[_signature(raw_schema, precomputed)],
        )
        signatures.append(RANK_PRECOMPUTED)
    archive.write_out(export_dir, verbose=False)

    info = {
        "tasks": list(tasks),
        "outputs": list(output_keys(tasks)),
        "signatures": signatures,
        "score_weights": dict(zip(tasks, map(float, score_weights), strict=True)),
        "ranking_features": list(raw_schema.feature_names),
        "optional_features": graph.optional,
        "catalog_products": table.size if table is not None else 0,
        "catalog_columns": sorted(table.columns) if table is not None else [],
        "catalog_bytes": table.nbytes if table is not None else 0,
    }
    with tf.io.gfile.GFile(os.path.join(export_dir, EXPORT_INFO_FILE), "w") as fh:
        fh.write(json.dumps(info, indent=2))
    sample_ids = [] if table is None else _sample_ids(catalog_files, tft_output)
    write_warmup_requests(export_dir, raw_schema, signatures, sample_ids)
    return export_dir


def _sample_ids(files: list[str], tft_output: tft.TFTransformOutput) -> list[str]:
    from contract.features import read_transformed

    batch = next(iter(read_transformed(files, tft_output, 100)))
    return [v.decode("utf-8") for v in batch[S.PRODUCT_ID].numpy()]


class _ServingGraph:
    """The functions behind the signatures, traced into the SavedModel."""

    def __init__(self, model, preprocessor, tft_output, raw_schema, score_weights, precision):
        self.model = model
        self.preprocessor = preprocessor
        self.tft_layer = tft_output.transform_features_layer()
        self.raw_schema = raw_schema
        self.optional = [f.name for f in raw_schema.ranking_features if not f.required]
        self.weights = tf.constant(score_weights, dtype=tf.float32)
        if preprocessor is not None:
            self.query_encoder = model.query_encoder
            self.product_encoder = model.product_encoder
            self.split = SplitScorer(
                folded_scorer(
                    model.scorer,
                    model.ranker_config,
                    model.wide_dim,
                    model.vocabulary_sizes,
                    precision,
                )
            )

    # Signatures.

    def rank_raw(self, features: dict) -> dict:
        candidates = [n for n in features if n not in REQUEST_INPUTS]
        return self.score(self._raw(checked_request(features, candidates, self.raw_schema)))

    def rank_precomputed(self, features: dict, table) -> dict:
        candidates = [n for n in features if n not in REQUEST_INPUTS]
        features = checked_request(features, candidates, self.raw_schema)
        size = tf.shape(features[S.PRODUCT_ID])
        raw = self._raw({**features, **{f: tf.fill(size, "") for f in PRODUCT_FIELDS}})
        transformed = self.tft_layer(raw)
        if PRODUCT_TERMS in table.columns:
            product = table.lookup(features[S.PRODUCT_ID], [PRODUCT_EMBEDDING, PRODUCT_TERMS])
            terms = product[PRODUCT_TERMS]
        else:
            product = table.lookup(features[S.PRODUCT_ID], [PRODUCT_EMBEDDING, CATEGORY_IDS])
            categories = tf.unstack(
                product[CATEGORY_IDS], num=len(categorical_input_names()), axis=1
            )
            terms = self.split.product_terms(product[PRODUCT_EMBEDDING], categories)
        return self._finish(self._score(transformed, product[PRODUCT_EMBEDDING], terms))

    def encode_products(self, features: dict) -> dict:
        features = checked_request(features, list(features), self.raw_schema)
        size = tf.shape(features[S.TITLE])
        raw = {S.QUERY: tf.fill(size, ""), S.PRODUCT_ID: tf.fill(size, ""), **features}
        if self.raw_schema.markets:  # products do not depend on the market
            raw[S.MARKET] = tf.fill(size, "")
        for f in self.raw_schema.ranking_features:
            raw[f.name] = tf.fill(size, float("nan") if not f.required else 0.0)
        transformed = self.tft_layer(self._raw(raw))
        return {PRODUCT_EMBEDDING: self._encode_products(transformed[S.PRODUCT_TEXT])}

    # Shared steps.

    def score(self, raw: dict) -> dict:
        """Raw features (optional ones sparse) -> probabilities and score."""
        transformed = self.tft_layer(raw)
        wide = tf.cast(transformed[S.WIDE], tf.float32)
        if self.preprocessor is None:
            return self._finish(self.model({S.WIDE: wide}, training=False))
        categories = [transformed[n] for n in categorical_input_names()]
        psi = self._encode_products(transformed[S.PRODUCT_TEXT])
        return self._finish(
            self._score(transformed, psi, self.split.product_terms(psi, categories))
        )

    def _score(self, transformed: dict, psi, product_terms) -> dict:
        """The scorer on each candidate's psi(i) and product terms: the query's part once
        per distinct query of the request (serving/first_layer.py)."""
        unique, index = tf.unique(transformed[S.QUERY])
        phi = self._encode_queries(unique)
        return self.split.score(
            tf.gather(phi, index),
            psi,
            tf.gather(self.split.query_terms(phi), index),
            product_terms,
            tf.cast(transformed[S.WIDE], tf.float32),
            transformed.get(S.MARKET_ID),  # None without markets: market 0
        )

    def catalog_terms(self, psi: np.ndarray, category_ids: np.ndarray) -> np.ndarray:
        """First-layer terms [n, W] of catalog products at export."""
        columns = [tf.constant(category_ids[:, c]) for c in range(category_ids.shape[1])]
        return self.split.product_terms(tf.constant(psi), columns).numpy()

    def encode_catalog_texts(self, texts: list[bytes]) -> np.ndarray:
        """psi(i) of product texts at export, in batches of similar length."""
        lengths = np.array([len(t) for t in texts])
        order = np.argsort(lengths, kind="stable")
        out = np.zeros([len(texts), self.product_encoder.output.shape[-1]], np.float32)
        for start in range(0, len(texts), ENCODE_BATCH):
            rows = order[start : start + ENCODE_BATCH]
            out[rows] = self._encode_products(tf.constant([texts[i] for i in rows])).numpy()
        return out

    def _raw(self, features: dict) -> dict:
        """Request tensors -> the transform's raw inputs: the query broadcast to every
        candidate, NaN in an optional feature turned into a missing (sparse) value."""
        raw = dict(features)
        size = tf.shape(features[S.PRODUCT_ID if S.PRODUCT_ID in raw else S.TITLE])
        for name in REQUEST_INPUTS:
            if name in raw:
                raw[name] = tf.broadcast_to(tf.reshape(raw[name], [-1]), size)
        for name in self.optional:
            if name in raw:
                raw[name] = _nan_to_sparse(raw[name])
        return raw

    def _encode_queries(self, queries: tf.Tensor) -> tf.Tensor:
        """phi(q) of distinct queries."""
        tokens = self.preprocessor(queries, tf.zeros([0], tf.string))
        return self.query_encoder(
            _trim_padding(tokens, "query_token_ids", "query_padding_mask"), training=False
        )

    def _encode_products(self, texts: tf.Tensor) -> tf.Tensor:
        tokens = self.preprocessor(tf.zeros([0], tf.string), texts)
        return self.product_encoder(
            _trim_padding(tokens, "product_token_ids", "product_padding_mask"), training=False
        )

    def _finish(self, outputs: dict) -> dict:
        tasks = self.raw_schema.task_names
        probs = {t: tf.reshape(outputs[t], [-1]) for t in tasks}
        stacked = tf.stack([probs[t] for t in tasks], axis=1)
        probs[SCORE] = tf.linalg.matvec(stacked, self.weights)
        return probs


def _trim_padding(tokens: dict, ids: str, mask: str) -> dict:
    """Token ids and padding mask cut to the longest text of the batch.

    The preprocessor pads every text to the trained length (16 query tokens), while a
    typical query is a few words: the encoder's cost grows with the sequence length, and the
    padded positions change nothing (attention and mean pooling mask them out, positions are
    absolute), so they are dropped before the encoder runs.
    """
    padding_mask = tf.cast(tokens[mask], tf.int32)
    length = tf.maximum(tf.reduce_max(tf.reduce_sum(padding_mask, axis=1)), 1)
    return {ids: tf.cast(tokens[ids], tf.int32)[:, :length], mask: padding_mask[:, :length]}


def checked_request(features: dict, candidates: list[str], raw_schema: S.RawSchema) -> dict:
    """The request with its rules asserted in the graph, so that TF Serving itself refuses a
    bad request (InvalidArgument, INVALID_ARGUMENT) instead of scoring it: at least one
    candidate, every candidate input as long as the first, a query (and a market) of one entry
    or one per candidate (a scalar or a vector), and every ranking feature finite and inside the
    schema's range (an optional one may also be NaN: missing)."""
    first = candidates[0]
    size = tf.size(features[first])
    checks = [
        tf.debugging.Assert(
            size > 0,
            [f"empty candidate list: input '{first}' has no entries; send at least one product"],
        )
    ]
    checks += [
        _feature_check(features[f.name], f)
        for f in raw_schema.ranking_features
        if f.name in features
    ]
    for name in candidates[1:]:
        checks.append(
            tf.debugging.Assert(
                tf.equal(tf.size(features[name]), size),
                [
                    f"mismatched lengths: input '{name}' has",
                    tf.size(features[name]),
                    f"entries but '{first}' has",
                    size,
                    "(one entry per candidate product)",
                ],
            )
        )
    for name in (n for n in REQUEST_INPUTS if n in features):
        entries = tf.size(features[name])
        checks.append(
            tf.debugging.Assert(
                tf.rank(features[name]) <= 1,
                [
                    f"input '{name}' must be a scalar or a vector of strings; it has rank",
                    tf.rank(features[name]),
                ],
            )
        )
        checks.append(
            tf.debugging.Assert(
                tf.logical_or(tf.equal(entries, 1), tf.equal(entries, size)),
                [
                    f"input '{name}' must have 1 entry (one {name} for every candidate) or one "
                    "per candidate; it has",
                    entries,
                    "for",
                    size,
                    "candidates",
                ],
            )
        )
    with tf.control_dependencies(checks):
        return {name: tf.identity(value) for name, value in features.items()}


def _examples_checked(parsed: dict, raw_schema: S.RawSchema) -> dict:
    """Parsed tf.Examples with every ranking feature's values checked as `checked_request` does
    (the present values of an optional, sparse feature)."""
    checks = []
    for f in raw_schema.ranking_features:
        value = parsed[f.name]
        checks.append(
            _feature_check(value.values if isinstance(value, tf.SparseTensor) else value, f)
        )
    with tf.control_dependencies(checks):
        return {
            name: (
                tf.SparseTensor(value.indices, tf.identity(value.values), value.dense_shape)
                if isinstance(value, tf.SparseTensor)
                else tf.identity(value)
            )
            for name, value in parsed.items()
        }


def _feature_check(value: tf.Tensor, feature: S.RankingFeature) -> tf.Operation:
    """Asserts that a ranking feature's values are finite and in the schema's range (NaN
    allowed, as missing, when the feature is optional); the message names the input, the
    first bad candidate and its value."""
    bad = tf.logical_not(tf.math.is_finite(value))
    if feature.min_value is not None:
        bad = tf.logical_or(bad, value < feature.min_value)
    if feature.max_value is not None:
        bad = tf.logical_or(bad, value > feature.max_value)
    low, high = feature.min_value, feature.max_value
    allowed = "finite"
    if low is not None and high is not None:
        allowed = f"finite and from {low:g} to {high:g}"
    elif low is not None:
        allowed = f"finite and at least {low:g}"
    elif high is not None:
        allowed = f"finite and at most {high:g}"
    if not feature.required:
        bad = tf.logical_and(bad, tf.logical_not(tf.math.is_nan(value)))
        allowed += ", or NaN for a missing value"
    first = tf.where(bad)[:1, 0]
    return tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad)),
        [
            f"input '{feature.name}' must be {allowed}; candidate",
            first,
            "has",
            tf.gather(value, first),
        ],
    )


def _nan_to_sparse(value: tf.Tensor) -> tf.SparseTensor:
    """A [N] float tensor with NaN for missing -> a [N, 1] SparseTensor of the present values."""
    column = tf.reshape(value, [-1, 1])
    indices = tf.where(tf.logical_not(tf.math.is_nan(column)))
    return tf.SparseTensor(
        indices, tf.gather_nd(column, indices), tf.shape(column, out_type=tf.int64)
    )
