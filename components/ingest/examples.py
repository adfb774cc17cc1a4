"""The tf.train.Example written for each kept row (contract.features.raw_feature_spec parses
it back).

Features (names from `contract.schema`):
  - every TEXT_COLUMNS field: bytes (UTF-8; empty when the value was empty or absent)
  - every ranking feature of the RawSchema: float (an optional one that was missing is absent)
  - impressions, clicks, add_to_cart, purchases: int64
  - position: float (0.0 = unknown)
  - the task labels click, atc, purchase: int64 0/1 (`schema.label_of`)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from contract import schema as S

if TYPE_CHECKING:
    from components.ingest.columnar import KeptRows


def to_example(row: Mapping[str, Any], schema: S.RawSchema) -> bytes:
    """Serialise one validated row (see `validate.Checked`) as a tf.train.Example."""
    from tensorflow.core.example import example_pb2  # heavy; only where examples are built

    example = example_pb2.Example()
    feature = example.features.feature
    for column in S.TEXT_COLUMNS:
        feature[column].bytes_list.value.append(row.get(column, "").encode("utf-8"))
    for name in schema.feature_names:
        if name in row:
            feature[name].float_list.value.append(float(row[name]))
    for column in S.FUNNEL:
        feature[column].int64_list.value.append(int(row[column]))
    feature[S.POSITION].float_list.value.append(float(row.get(S.POSITION, 0.0)))
    counts = {column: int(row[column]) for column in S.FUNNEL}
    for task in S.TASKS:
        feature[task].int64_list.value.append(S.label_of(task, counts))
    return example.SerializeToString()


def _lists(values: pa.Array, absent: np.ndarray | None = None) -> pa.LargeListArray:
    """One value per row as a list column (a null list where `absent`)."""
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int64))
    if absent is not None and absent.any():
        lists = pa.LargeListArray.from_arrays(offsets, values, mask=pa.array(absent))
        return lists
    return pa.LargeListArray.from_arrays(offsets, values)


def to_examples(kept: KeptRows, schema: S.RawSchema) -> list[bytes]:
    """Serialise a block of validated rows (`columnar.KeptRows`) as tf.Examples with tfx_bsl's
    C++ encoder: the same features and values as `to_example`, except that an absent optional
    feature is an empty feature (it parses as absent)."""
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    columns, names = [], []
    for column in S.TEXT_COLUMNS:
        text = pa.array(kept.columns[column], pa.large_string())
        columns.append(_lists(text.cast(pa.large_binary())))
        names.append(column)
    for name in schema.feature_names:
        values = np.asarray(kept.columns[name], np.float64)
        absent = np.isnan(values)
        columns.append(_lists(pa.array(values.astype(np.float32)), absent))
        names.append(name)
    for column in S.FUNNEL:
        columns.append(_lists(pa.array(np.asarray(kept.columns[column], np.int64))))
        names.append(column)
    position = np.asarray(kept.columns[S.POSITION], np.float64).astype(np.float32)
    columns.append(_lists(pa.array(position)))
    names.append(S.POSITION)
    for task in S.TASKS:
        count = np.asarray(kept.columns[S.TASK_COUNT_COLUMN[task]], np.int64)
        columns.append(_lists(pa.array((count > 0).astype(np.int64))))
        names.append(task)
    batch = pa.RecordBatch.from_arrays(columns, names)
    return RecordBatchToExamplesEncoder().encode(batch)
