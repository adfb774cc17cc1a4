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
from typing import Any

from contract import schema as S


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
