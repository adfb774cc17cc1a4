"""The raw splits that pass from ingest to the later steps: each split a folder of Parquet
files (`layout.raw_split_pattern`), one row per kept (query, product) pair, with the columns
of `arrow_schema`, typed as the schema says:

    every text column (and the market, when the schema declares markets)  large_string
    every ranking feature         float32 (null where an optional one is absent)
    the funnel's counts           int64
    position                      float32 (0 = unknown)
    each task's label             int64 (0/1, `Task.label`)

Ingest writes one file per split and input file (`WriteShards`):
`data-SSSSS-of-NNNNN.parquet`, SSSSS being the input file's index among the NNNNN files read
(sorted by path), with that file's rows in the file's order, in row groups of
`ROW_GROUP_ROWS` rows. An input file with no row in a split has no file there; a split with
no row at all gets one empty file. So the same input gives the same files, byte for byte,
whatever the runner, its number of workers and their timing.

Who reads them, and how:

- the transform (`ReadListBatches`): record batches whose columns are one-value lists
  (`as_lists`), described by `tensor_adapter_config`. That is what tfx_bsl's tf.Example
  decoder makes of the same rows' tf.Examples, so tensorflow-transform sees the same tensors,
  without a tf.Example on the way;
- evaluate, its references and the local run's summary read columns (`read_split`);
- where tf.Examples are needed, `to_examples` serialises a batch's rows with tfx_bsl's C++
  encoder, as ingest wrote them when it wrote TFRecords: evaluate feeds them to the serving
  model's `score_examples` signature, and `export_tfrecords` writes a split's as gzip
  TFRecords for tools that take tf.Examples.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from contract import layout
from contract import schema as S

if TYPE_CHECKING:
    from components.ingest.columnar import KeptRows

ROW_GROUP_ROWS = 65_536  # rows of a row group (at least: whole blocks are written)
COMPRESSION = "snappy"
BATCH_ROWS = 4096  # rows of a record batch read for the transform
_TEMPORARY = "beam-temp-"  # the prefix of the folder a shard is written in before its rename


def _text_columns(raw_schema: S.RawSchema) -> tuple[str, ...]:
    return S.TEXT_COLUMNS + ((S.MARKET,) if raw_schema.markets else ())


def arrow_schema(raw_schema: S.RawSchema) -> pa.Schema:
    """The columns of a raw split's files, in their order (module docstring)."""
    required = {f.name for f in raw_schema.ranking_features if f.required}
    return pa.schema(
        [pa.field(c, pa.large_string(), nullable=False) for c in _text_columns(raw_schema)]
        + [
            pa.field(name, pa.float32(), nullable=name not in required)
            for name in raw_schema.feature_names
        ]
        + [pa.field(c, pa.int64(), nullable=False) for c in raw_schema.funnel]
        + [pa.field(S.POSITION, pa.float32(), nullable=False)]
        + [pa.field(t, pa.int64(), nullable=False) for t in raw_schema.task_names]
    )


def to_record_batch(kept: KeptRows, raw_schema: S.RawSchema) -> pa.RecordBatch:
    """A block of validated rows (`columnar.KeptRows`) as a record batch of `arrow_schema`."""
    schema = arrow_schema(raw_schema)
    columns = [pa.array(kept.columns[c], pa.large_string()) for c in _text_columns(raw_schema)]
    for name in raw_schema.feature_names:
        values = np.asarray(kept.columns[name], np.float64)
        absent = np.isnan(values)
        columns.append(pa.array(values.astype(np.float32), mask=absent if absent.any() else None))
    columns += [pa.array(np.asarray(kept.columns[c], np.int64)) for c in raw_schema.funnel]
    columns.append(pa.array(np.asarray(kept.columns[S.POSITION], np.float64).astype(np.float32)))
    for task in raw_schema.tasks:
        columns.append(pa.array(task.label(np.asarray(kept.columns[task.count], np.int64))))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _one_value_lists(column: pa.Array) -> pa.LargeListArray:
    """Each value as a list of one, a null (empty) list where the value is null; text as
    large_binary, as tfx_bsl's tf.Example decoder gives it."""
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.large_binary())
    if column.null_count == 0:
        offsets = pa.array(np.arange(len(column) + 1, dtype=np.int64))
        return pa.LargeListArray.from_arrays(offsets, column)
    valid = np.asarray(column.is_valid())
    offsets = pa.array(np.concatenate(([0], np.cumsum(valid))).astype(np.int64))
    return pa.LargeListArray.from_arrays(offsets, column.drop_null(), mask=pa.array(~valid))


def as_lists(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch of a raw split with every column as one-value lists (`list_schema`)."""
    return pa.RecordBatch.from_arrays(
        [_one_value_lists(column) for column in batch.columns], batch.schema.names
    )


def list_schema(raw_schema: S.RawSchema) -> pa.Schema:
    """The schema of `as_lists`' batches."""
    value = {pa.large_string(): pa.large_binary()}
    return pa.schema(
        [
            pa.field(f.name, pa.large_list(value.get(f.type, f.type)))
            for f in arrow_schema(raw_schema)
        ]
    )


def tensor_adapter_config(raw_schema: S.RawSchema, schema_proto=None):
    """The TensorAdapterConfig of `as_lists`' batches: a dense tensor per feature of
    `contract.features.raw_feature_spec`, a sparse one per optional ranking feature (the
    tensors tensorflow-transform reads from tf.Examples). `schema_proto`: that spec as a
    tensorflow_metadata Schema, when the caller has it already."""
    from tfx_bsl.public import tfxio
    from tfx_bsl.tfxio import tensor_representation_util

    if schema_proto is None:
        from tensorflow_transform.tf_metadata import schema_utils

        from contract.features import raw_feature_spec

        schema_proto = schema_utils.schema_from_feature_spec(raw_feature_spec(raw_schema))
    return tfxio.TensorAdapterConfig(
        list_schema(raw_schema),
        tensor_representation_util.InferTensorRepresentationsFromMixedSchema(schema_proto),
    )


def to_examples(batch: pa.RecordBatch) -> list[bytes]:
    """The rows of a raw split's batch as serialized tf.Examples (tfx_bsl's C++ encoder), a
    feature per column (an absent optional feature empty, which parses as absent)."""
    from tfx_bsl.public.tfxio import RecordBatchToExamplesEncoder

    return RecordBatchToExamplesEncoder().encode(as_lists(batch))


def shards(root: str, split: str) -> list[str]:
    """The Parquet files of a split of the ingest output `root`, in name order (so rows come
    in input file order, then row order). Raises FileNotFoundError when there is none."""
    pattern = layout.raw_split_pattern(root, split)
    found = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not found:
        raise FileNotFoundError(f"no {split} split in {root} (expected {pattern})")
    return found


def read_batches(
    paths: Sequence[str], columns: Sequence[str] | None = None, batch_size: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The rows of these Parquet files in batches of up to `batch_size` rows, file by file
    (`columns`: only these; None: all)."""
    for path in paths:
        with FileSystems.open(path) as fh:
            yield from pq.ParquetFile(fh).iter_batches(
                batch_size=batch_size, columns=None if columns is None else list(columns)
            )


def read_split(root: str, split: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A whole split of the ingest output `root` as one table, in `shards` order."""
    paths = shards(root, split)
    with FileSystems.open(paths[0]) as fh:
        schema = pq.read_schema(fh)
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    return pa.Table.from_batches(list(read_batches(paths, columns)), schema=schema)


class ReadListBatches(beam.PTransform):
    """The Parquet files of a pattern -> record batches of `as_lists`, up to `batch_size`
    rows each (Beam's Parquet source: a runner may split a file between workers at its row
    groups)."""

    def __init__(self, file_pattern: str, batch_size: int = BATCH_ROWS, label=None) -> None:
        super().__init__(label)
        self._pattern, self._batch_size = file_pattern, batch_size

    def expand(self, pipeline):
        return (
            pipeline
            | "Read" >> beam.io.ReadFromParquetBatched(self._pattern)
            | "AsLists" >> beam.FlatMap(_list_batches, batch_size=self._batch_size)
        )


def _list_batches(table: pa.Table, batch_size: int) -> Iterator[pa.RecordBatch]:
    for batch in table.to_batches(max_chunksize=batch_size):
        yield as_lists(batch)


class _Shard:
    """One Parquet file being written: row groups of `ROW_GROUP_ROWS` rows or more, into a
    temporary folder beside its final name until `close` renames it."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self.path, self._schema = path, schema
        folder, name = os.path.split(path)
        self._temporary = os.path.join(folder, f"{_TEMPORARY}{uuid.uuid4().hex}", name)
        self._file = FileSystems.create(self._temporary)
        self._writer = pq.ParquetWriter(self._file, schema, compression=COMPRESSION)
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0
        self.last_row = -1

    def add(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._rows += batch.num_rows
        if self._rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.Table.from_batches(self._pending, schema=self._schema)
            self._writer.write_table(table, row_group_size=table.num_rows)
        self._pending, self._rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._file.close()
        FileSystems.rename([self._temporary], [self.path])
        FileSystems.delete([os.path.dirname(self._temporary)])

    def abandon(self) -> None:
        """Remove the unfinished file (a bundle that failed), publishing nothing."""
        for close in (self._writer.close, self._file.close):
            with contextlib.suppress(Exception):
                close()
        FileSystems.delete([os.path.dirname(self._temporary)])


class WriteShards(beam.DoFn):
    """`columnar.KeptRows` of one split -> its Parquet files under `output_dir`, one per input
    file (`layout.raw_shard_path`; `files`: how many were read). A file's blocks must come in
    row order in one bundle, as they do when one worker reads the file and the validation and
    this write run fused with the read (every Beam runner fuses them); a block out of order
    fails the job instead of writing the rows in another order."""

    def __init__(self, output_dir: str, split: str, files: int, raw_schema: S.RawSchema) -> None:
        self._output_dir, self._split, self._files = output_dir, split, files
        self._raw_schema = raw_schema

    def setup(self) -> None:
        self._schema = arrow_schema(self._raw_schema)

    def start_bundle(self) -> None:
        self._open: dict[int, _Shard] = {}

    def process(self, kept: KeptRows) -> None:
        shard = self._open.get(kept.file_index)
        if shard is None:
            path = layout.raw_shard_path(
                self._output_dir, self._split, kept.file_index, self._files
            )
            shard = self._open[kept.file_index] = _Shard(path, self._schema)
        if kept.first_row <= shard.last_row:
            raise RuntimeError(
                f"the rows of input file {kept.file_index} reached the {self._split} writer out "
                f"of order (row {kept.first_row} after {shard.last_row}): the runner did not "
                "keep a file's blocks in one bundle"
            )
        shard.last_row = kept.first_row
        shard.add(to_record_batch(kept, self._raw_schema))

    def finish_bundle(self) -> None:
        for index in sorted(self._open):
            self._open[index].close()
        self._open = {}

    def teardown(self) -> None:
        for shard in getattr(self, "_open", {}).values():
            shard.abandon()


def write_empty_shard(root: str, split: str, files: int, raw_schema: S.RawSchema) -> str:
    """Write the empty first file of a split that has none (so that every split has a file
    to read); return its path."""
    path = layout.raw_shard_path(root, split, 0, files)
    with FileSystems.create(path) as fh:
        pq.write_table(arrow_schema(raw_schema).empty_table(), fh, compression=COMPRESSION)
    return path


def export_tfrecords(root: str, output_dir: str, splits: Sequence[str] = S.SPLITS) -> list[str]:
    """Write the raw splits of the ingest output `root` as gzip TFRecords of tf.Examples
    under `output_dir` (`layout.split_pattern`: a file per Parquet file, named alike); return
    the files written."""
    from components import tfrecords

    written = []
    for split in splits:
        for path in shards(root, split):
            name = os.path.basename(path)[: -len(layout.SPLIT_SUFFIX)] + layout.RECORD_SUFFIX
            target = os.path.join(layout.split_dir(output_dir, split), name)
            tfrecords.write_records(
                target, (e for b in read_batches([path]) for e in to_examples(b))
            )
            written.append(target)
    return written
