"""Warmup requests for TF Serving, written into the SavedModel at export:
`assets.extra/tf_serving_warmup_requests`, a TFRecord of `PredictionLog` protos that TF
Serving (and serving/server.py) replays when it loads a version, before it serves traffic,
so the first real requests do not pay for graph warm-up."""

from __future__ import annotations

import os

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from contract import schema as S
from serving.requests import predict_request
from serving.signatures import ENCODE_PRODUCTS, PRODUCT_FIELDS, RANK_PRECOMPUTED, SCORE_EXAMPLES

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
# Candidate counts replayed per ranking signature: one product and a typical result page.
WARMUP_SIZES = (1, 100)


def warmup_path(version_dir: str) -> str:
    return os.path.join(version_dir, WARMUP_DIR, WARMUP_FILE)


def warmup_inputs(
    raw_schema: S.RawSchema, signature: str, size: int, product_ids: list[str]
) -> dict[str, list]:
    """Well-formed inputs of `signature` for `size` candidates (made-up products, or the
    given catalog ids for the pre-computed signature)."""
    features = {f.name: [0.0] * size for f in raw_schema.ranking_features}
    fields = {f: [f"warmup {f} {i}" for i in range(size)] for f in PRODUCT_FIELDS}
    if signature == ENCODE_PRODUCTS:
        return fields
    ids = [product_ids[i % len(product_ids)] for i in range(size)] if product_ids else []
    market = {S.MARKET: [raw_schema.markets[0]]} if raw_schema.markets else {}
    if signature == RANK_PRECOMPUTED:
        return {S.QUERY: ["warmup query"], **market, S.PRODUCT_ID: ids, **features}
    return {
        S.QUERY: ["warmup query"],
        **market,
        S.PRODUCT_ID: [f"warmup-{i}" for i in range(size)],
        **fields,
        **features,
    }


def write_warmup_requests(
    version_dir: str,
    raw_schema: S.RawSchema,
    signatures: list[str],
    product_ids: list[str],
    model_name: str = "mlpr",
) -> str:
    """Write the warmup file for the ranking signatures in `signatures`; return its path."""
    path = warmup_path(version_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for signature in signatures:
            if signature == SCORE_EXAMPLES:
                continue  # batch scoring: not on the latency path
            for size in WARMUP_SIZES:
                request = predict_request(
                    model_name, signature, warmup_inputs(raw_schema, signature, size, product_ids)
                )
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
                writer.write(log.SerializeToString())
    return path


def read_warmup_requests(version_dir: str) -> list[predict_pb2.PredictRequest]:
    """The PredictRequests of a version's warmup file ([] when it has none)."""
    path = warmup_path(version_dir)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.WhichOneof("log_type") == "predict_log":
            requests.append(log.predict_log.request)
    return requests
