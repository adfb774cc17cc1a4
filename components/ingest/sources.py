"""Finding the input files and checking them before the Beam job starts.

Each matched file gets a format (from its extension with input_format "auto"), and its header
(CSV) or schema (Parquet) is checked for the required columns, so a wrong file fails at once
with an `IngestError` that names it rather than as millions of dead-lettered rows.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import dataclasses
import decimal
import gzip
import io
import json
import lzma
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.ingest.errors import IngestError
from contract import schema as S

CSV, JSONL, PARQUET = "csv", "jsonl", "parquet"
FORMATS = (CSV, JSONL, PARQUET)
AUTO = "auto"
_EXTENSIONS = {
    ".csv": CSV,
    ".jsonl": JSONL,
    ".ndjson": JSONL,
    ".json": JSONL,
    ".parquet": PARQUET,
    ".pq": PARQUET,
}
# Text formats may be compressed: suffix -> how to decompress a binary stream.
_DECOMPRESS = {
    ".gz": lambda fh: gzip.GzipFile(fileobj=fh, mode="rb"),
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
}


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One matched input file, the format it is read as and its size in bytes (as stored:
    compressed when it is)."""

    path: str
    format: str
    size: int = 0


def format_of(path: str) -> str | None:
    """The format implied by the file name, or None when the extension is not known."""
    name = path.lower()
    for suffix in _DECOMPRESS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    fmt = _EXTENSIONS.get(os.path.splitext(name)[1])
    if fmt == PARQUET and name != path.lower():
        return None  # Parquet compresses internally; a .parquet.gz is not readable as Parquet
    return fmt


def check_options(input_format: str, encoding: str) -> None:
    if input_format not in (AUTO, *FORMATS):
        raise IngestError(
            f"input_format must be one of {', '.join((AUTO, *FORMATS))}, got {input_format!r}"
        )
    try:
        codecs.lookup(encoding)
    except LookupError as err:
        raise IngestError(f"unknown encoding {encoding!r} (e.g. utf-8, iso-8859-1)") from err


def resolve_inputs(
    input_pattern: str | Sequence[str],
    input_format: str,
    encoding: str,
    schema: S.RawSchema,
) -> tuple[InputFile, ...]:
    """The files that `input_pattern` (one path or glob, or several) matches, each checked and
    each once; raises IngestError on the first problem."""
    check_options(input_format, encoding)
    patterns = [input_pattern] if isinstance(input_pattern, str) else list(input_pattern)
    if not any(patterns):
        raise IngestError("no input given: input_pattern is empty")
    matched: dict[str, int] = {}
    for pattern in patterns:
        if "://" not in pattern and os.path.isdir(pattern):
            raise IngestError(
                f"{pattern} is a directory; give a file or a glob such as "
                f"{os.path.join(pattern, '*.csv')}"
            )
        found = FileSystems.match([pattern])[0].metadata_list
        if not found:
            raise IngestError(f"no file matches the input pattern {pattern}")
        matched.update({m.path: m.size_in_bytes for m in found})
    inputs = []
    for path, size in sorted(matched.items()):
        fmt = input_format if input_format != AUTO else format_of(path)
        if fmt is None:
            raise IngestError(
                f"cannot tell the format of {path} from its extension; name it .csv, "
                f".jsonl or .parquet, or set the input format (csv, jsonl, parquet)"
            )
        if size == 0:
            raise IngestError(f"{path} is empty (expected a {fmt.upper()} file with rows)")
        _CHECKS[fmt](path, encoding, schema)
        inputs.append(InputFile(path=path, format=fmt, size=size))
    return tuple(inputs)


def open_binary(path: str):
    """A binary stream of a CSV or JSONL file, decompressed by suffix, on any Beam file system."""
    stream = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    for suffix, decompress in _DECOMPRESS.items():
        if path.lower().endswith(suffix):
            return decompress(stream)
    return stream


def open_text(path: str, encoding: str, newline: str | None = None) -> io.TextIOWrapper:
    """A text stream of a CSV or JSONL file (decompressed by suffix), on any Beam file system.

    Bytes invalid in `encoding` become surrogate escapes instead of raising.
    """
    return io.TextIOWrapper(
        open_binary(path), encoding=encoding, errors="surrogateescape", newline=newline
    )


def _missing(columns: list[str], schema: S.RawSchema) -> list[str]:
    """The required columns absent from an export with these columns, by the export's names
    (with the log column they stand for when the schema maps them)."""
    present = set(schema.rename(dict.fromkeys(columns)))
    missing = []
    for column in schema.required_columns():
        if column not in present:
            source = schema.source_name(column)
            missing.append(source if source == column else f"{source} (for {column})")
    return missing


def csv_header(reader: Iterator[list[str]]) -> list[str] | None:
    """The stripped column names of the first non-blank CSV record, or None when there is none."""
    for record in reader:
        if record and any(f.strip() for f in record):
            record[0] = record[0].lstrip("\ufeff")  # a UTF-8 byte order mark
            return [f.strip() for f in record]
    return None


def _refuse_repeated_names(names: list[str], where: str, unnamed_ok: bool = True) -> None:
    """A column named twice: which of the two a field means is a guess, so the file is
    refused. Unnamed CSV columns ("", as a spreadsheet exports trailing empty columns) are
    ignored like any extra column (`readers.read_csv`), however many there are."""
    dupes = sorted({c for c in names if (c or not unnamed_ok) and names.count(c) > 1})
    if dupes:
        raise IngestError(f"{where} names column(s) twice: {', '.join(map(repr, dupes))}")


def _check_csv(path: str, encoding: str, schema: S.RawSchema) -> None:
    try:
        with open_text(path, encoding, newline="") as text:
            header = csv_header(csv.reader(text))
    except (csv.Error, OSError, EOFError) as err:  # OSError: e.g. a corrupt .gz
        raise IngestError(f"cannot read the CSV header of {path}: {err}") from err
    if header is None:
        raise IngestError(f"{path} is empty: no CSV header line")
    _refuse_repeated_names(header, f"CSV header of {path}")
    missing = _missing(header, schema)
    if missing:
        raise IngestError(S.required_fields_message(missing, f"CSV header of {path}"))


def load_json(text: str) -> Any:
    """`json.loads`, except that an integer too long for `int()` (over 4,300 digits: Python's
    guard against slow conversions) becomes an exact `decimal.Decimal`, which validation
    dead-letters as out of range, instead of failing the line (or the up-front check)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError:  # the digit limit (JSONDecodeError is a ValueError too, raised above)
        return json.loads(text, parse_int=_json_int)


def _json_int(text: str) -> int | decimal.Decimal:
    try:
        return int(text)
    except ValueError:
        return decimal.Decimal(text)


_JSONL_SAMPLE_ROWS = 1000  # JSON objects read up front to check the required keys


def _check_jsonl(path: str, encoding: str, schema: S.RawSchema) -> None:
    """A JSONL file needs a line, and its first rows must name every required key: a key that
    none of the first 1,000 objects has is a wrong export, not bad rows to dead-letter."""
    keys: set[str] = set()
    objects = lines = 0
    try:
        with open_text(path, encoding) as text:
            for line in text:
                stripped = line.strip().lstrip("\ufeff")
                if not stripped:
                    continue
                lines += 1
                try:
                    value = load_json(stripped)
                except (json.JSONDecodeError, RecursionError):
                    continue  # dead-lettered row by row
                if isinstance(value, dict):
                    keys.update(value)
                    objects += 1
                if objects >= _JSONL_SAMPLE_ROWS:
                    break
    except (OSError, EOFError) as err:
        raise IngestError(f"cannot read {path}: {err}") from err
    if not lines:
        raise IngestError(f"{path} is empty: no JSON lines")
    missing = _missing(sorted(keys), schema) if objects else []
    if missing:
        raise IngestError(
            S.required_fields_message(
                missing, f"every one of the first {objects} JSON object(s) of {path}"
            )
        )


def _check_parquet(path: str, encoding: str, schema: S.RawSchema) -> None:
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            names = pq.ParquetFile(fh).schema_arrow.names
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for non-Parquet bytes
        raise IngestError(f"{path} is not a readable Parquet file: {err}") from err
    _refuse_repeated_names(names, f"Parquet schema of {path}", unnamed_ok=False)
    missing = _missing(names, schema)
    if missing:
        raise IngestError(S.required_fields_message(missing, f"Parquet schema of {path}"))


_CHECKS = {CSV: _check_csv, JSONL: _check_jsonl, PARQUET: _check_parquet}
