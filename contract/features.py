"""The feature specs of the records that pass between the steps (TensorFlow's side of the
contract in contract/schema.py): the raw tf.Examples ingest writes, the raw features a ranking
request carries, and a reader of the transformed records."""

from __future__ import annotations

import tensorflow as tf

from contract import schema as S


def raw_feature_spec(raw_schema: S.RawSchema, with_labels: bool = True) -> dict:
    """Feature spec of the tf.Examples written by ingest."""
    spec: dict = {c: tf.io.FixedLenFeature([], tf.string) for c in S.TEXT_COLUMNS}
    if raw_schema.markets:
        spec[S.MARKET] = tf.io.FixedLenFeature([], tf.string)
    for f in raw_schema.ranking_features:
        spec[f.name] = (
            tf.io.FixedLenFeature([], tf.float32) if f.required else tf.io.VarLenFeature(tf.float32)
        )
    spec[S.POSITION] = tf.io.FixedLenFeature([], tf.float32)
    if with_labels:
        for c in raw_schema.funnel:
            spec[c] = tf.io.FixedLenFeature([], tf.int64)
        for t in raw_schema.task_names:
            spec[t] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def serving_feature_spec(raw_schema: S.RawSchema) -> dict:
    """The raw features a ranking request carries: no engagement counts, no labels."""
    spec = raw_feature_spec(raw_schema, with_labels=False)
    for unused in (S.POSITION, S.DESCRIPTION):
        spec.pop(unused)
    return spec


def read_transformed(files: list[str], tft_output, batch_size: int) -> tf.data.Dataset:
    """Batches of parsed transformed records (`tft_output`: their TFTransformOutput), in file
    order."""
    spec = tft_output.transformed_feature_spec()
    return (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(batch_size)
        .map(lambda x: tf.io.parse_example(x, spec), num_parallel_calls=tf.data.AUTOTUNE)
    )
