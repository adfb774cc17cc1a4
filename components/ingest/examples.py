"""The tf.train.Example written for each kept row (contract.features.raw_feature_spec parses
it back).

Features (names from `contract.schema`):
  - every TEXT_COLUMNS field: bytes (UTF-8; empty when the value was empty or absent)
  - market: bytes, the declared market in lower case (only when the schema declares markets)
  - every ranking feature of the RawSchema: float (an optional one that was missing is an
    empty feature, which parses as absent)
  - the funnel's counts (`RawSchema.funnel`: impressions, clicks, add_to_cart, purchases by
    default): int64
  - position: float (0.0 = unknown)
  - one label per task of the schema (click, atc, purchase by default): int64 0/1
    (`Task.label`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from contract import schema as S

if TYPE_CHECKING:
    from components.ingest.columnar import KeptRows


def _lists(values: pa.Array, absent: np.ndarray | None = None) -> pa.LargeListArray:
    """One value per row as a list column (a null list where `absent`)."""
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int64))
    if absent is not None and absent.any():
        return pa.LargeListArray.from_arrays(offsets, values, mask=pa.array(absent))
    return pa.LargeListArray.from_arrays(offsets, values)


def to_examples(kept: KeptRows, schema: S.RawSchema) -> list[bytes]:
    """Serialise a block of validated rows (`columnar.KeptRows`) as tf.Examples with tfx_bsl's
    C++ encoder, one per row, with the features above."""
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    columns, names = [], []
    for column in S.TEXT_COLUMNS + ((S.MARKET,) if schema.markets else ()):
        text = pa.array(kept.columns[column], pa.large_string())
        columns.append(_lists(text.cast(pa.large_binary())))
        names.append(column)
    for name in schema.feature_names:
        values = np.asarray(kept.columns[name], np.float64)
        absent = np.isnan(values)
        columns.append(_lists(pa.array(values.astype(np.float32)), absent))
        names.append(name)
    for column in schema.funnel:
        columns.append(_lists(pa.array(np.asarray(kept.columns[column], np.int64))))
        names.append(column)
    position = np.asarray(kept.columns[S.POSITION], np.float64).astype(np.float32)
    columns.append(_lists(pa.array(position)))
    names.append(S.POSITION)
    for task in schema.tasks:
        count = np.asarray(kept.columns[task.count], np.int64)
        columns.append(_lists(pa.array(task.label(count))))
        names.append(task.name)
    batch = pa.RecordBatch.from_arrays(columns, names)
    return RecordBatchToExamplesEncoder().encode(batch)
