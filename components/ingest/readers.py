"""Streaming readers: every row of every input file, with its source and 1-based row number.

CSV rows are numbered by data record (header excluded; a quoted field may span lines), JSONL
rows by line number, Parquet rows by position. Text is decoded with errors="surrogateescape",
so bytes that are invalid in the declared encoding survive as surrogates and validation can
dead-letter the row that holds them instead of failing the whole file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.ingest import sources
from components.schema import RawSchema

_PARQUET_BATCH_ROWS = 4096
_CSV_FIELD_LIMIT = 64 * 1024 * 1024  # long product descriptions are fine


class RawRecord(NamedTuple):
    """One row as read, before validation.

    `values` maps column name to value (str for CSV; JSON or Parquet types otherwise), or is
    None when the row could not be parsed at all; then `problem` says why. `raw` is what the
    dead-letter output shows: the values, or the unparsable row itself.
    """

    source: str
    row: int
    values: dict[str, Any] | None
    raw: Any
    problem: str | None = None


def read_csv(path: str, encoding: str) -> Iterator[RawRecord]:
    with sources.open_text(path, encoding, newline="") as text:
        reader = csv.reader(text)
        header = sources.csv_header(reader)
        if header is None:
            return
        row = 0
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                row += 1
                yield RawRecord(path, row, None, None, f"is not valid CSV: {err}")
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line
            row += 1
            if len(fields) != len(header):
                problem = f"has {len(fields)} fields but the header has {len(header)}"
                yield RawRecord(path, row, None, fields, problem)
            else:
                values = dict(zip(header, fields, strict=True))
                yield RawRecord(path, row, values, values)


def read_jsonl(path: str, encoding: str) -> Iterator[RawRecord]:
    with sources.open_text(path, encoding) as text:
        for line_no, line in enumerate(text, start=1):
            stripped = (line.lstrip("\ufeff") if line_no == 1 else line).strip()
            if not stripped:
                continue
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as err:
                yield RawRecord(path, line_no, None, stripped, f"is not valid JSON: {err.msg}")
                continue
            if not isinstance(value, dict):
                problem = f"is a JSON {type(value).__name__}, not an object"
                yield RawRecord(path, line_no, None, stripped, problem)
            else:
                yield RawRecord(path, line_no, value, value)


def read_parquet(path: str, encoding: str) -> Iterator[RawRecord]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        parquet = pq.ParquetFile(fh)
        row = 0
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for values in batch.to_pylist():
                row += 1
                for key, value in values.items():
                    if isinstance(value, bytes):  # a binary (not string) column
                        values[key] = value.decode(encoding, errors="surrogateescape")
                yield RawRecord(path, row, values, values)


_READERS = {sources.CSV: read_csv, sources.JSONL: read_jsonl, sources.PARQUET: read_parquet}


def read_file(path: str, fmt: str, encoding: str) -> Iterator[RawRecord]:
    """Every row of one file in the given format."""
    return _READERS[fmt](path, encoding)


class ReadRecords(beam.DoFn):
    """(path, format) -> RawRecord for every row of that file, streamed, with the export's
    column names mapped to the log's when the schema declares `columns` (the dead-letter
    output keeps the row as the export wrote it)."""

    def __init__(self, encoding: str, schema: RawSchema | None = None) -> None:
        self._encoding = encoding
        self._schema = schema

    def setup(self) -> None:
        csv.field_size_limit(_CSV_FIELD_LIMIT)

    def process(self, element: tuple[str, str]) -> Iterator[RawRecord]:
        path, fmt = element
        records = read_file(path, fmt, self._encoding)
        if self._schema is None or not self._schema.columns:
            yield from records
            return
        for record in records:
            if record.values is not None:
                record = record._replace(values=self._schema.rename(record.values))
            yield record
