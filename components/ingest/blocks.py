"""Rows read in blocks: the unit the ingest job passes between its Beam steps.

A block holds up to a few thousand consecutive rows of one file, so Beam's per-element cost
is paid per block and validation, encoding and statistics run over columns:

- CSV is cut into chunks of whole lines (about 1 MiB), each read by pyarrow's CSV reader
  (every column as text); JSONL is decoded in pieces of whole lines (about 1 MiB), each read
  by pyarrow's JSON reader with an explicit schema (`json_blocks`); Parquet is read by pyarrow
  batch by batch. Such a block is an Arrow table with the export's column names.
- A chunk that pyarrow does not read exactly as `readers.read_csv` reads it goes to the row
  reader, from its first line to the first record that ends a chunk (then pyarrow reads on):
  a quote left open (also on a last line without a line end, which pyarrow would close), a
  field that spans lines, a wrong number of fields, bytes invalid in the encoding. The row
  reader's blocks hold `RawRecord`s, numbered as that reader numbers them; so a malformed row
  still costs that row only, with the same dead letter, and the speed of its chunk only. The
  row reader reads a whole CSV file whose header is not its first line or whose encoding
  cannot be cut at line ends (UTF-16).
- A JSONL piece that pyarrow does not read exactly as `readers.read_jsonl` does (a line that
  is not one JSON object, a blank line, NaN or Infinity, a value of another type, bytes
  invalid in the encoding, ...: see `json_blocks`) goes to the row reader, line by line
  (`json.loads`), and pyarrow reads on at the next piece. A JSONL block from pyarrow keeps
  its lines, so that a row the column checks leave to the row checks is read again as the
  row reader reads it (`RowBlock.record`): its values, types and dead letter are the row
  reader's. JSONL without a schema to type it (`read_blocks(schema=None)`) is read by the
  row reader.

Row numbers are the row reader's: CSV by data record (header excluded), Parquet by position,
JSONL by line.
"""

from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import io
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.ingest import json_blocks, readers, sources
from components.ingest.readers import RawRecord
from contract.schema import RawSchema

BLOCK_ROWS = 8192  # rows per block from the row reader
PARQUET_BATCH_ROWS = 4096  # rows per Parquet block: a corrupt page is reported as before
_CSV_BLOCK_BYTES = 1 << 20  # a CSV chunk: about 5,000 rows of a typical log
_JSONL_BLOCK_BYTES = 1 << 20  # a JSONL piece: about 2,500 rows of a typical log

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class RowBlock:
    """Consecutive rows of one file: an Arrow `table` (rows `first_row`, `first_row` + 1, ...)
    or a list of `records` from the row reader. A JSONL table keeps its `lines` (UTF-8, one
    per row), which `record` reads again as the row reader does."""

    source: str
    first_row: int = 1
    table: pa.Table | None = None
    records: list[RawRecord] | None = None
    encoding: str = (
        "utf-8"  # how a Parquet binary column is decoded (invalid bytes kept as escapes)
    )
    lines: bytes | None = None
    _line_ends: np.ndarray | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def __len__(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.records)

    def rows(self) -> list[int]:
        """The row number of each row of the block."""
        if self.table is not None:
            return list(range(self.first_row, self.first_row + len(self)))
        return [r.row for r in self.records]

    def record(self, index: int) -> RawRecord:
        """Row `index` of the block as the row reader gives it (values by the export's names)."""
        if self.records is not None:
            return self.records[index]
        if self.lines is not None:
            record = readers.jsonl_record(self.source, self.first_row + index, self._line(index))
            if record is None:  # `json_blocks.read_lines` takes no blank line
                raise ValueError(f"row {self.first_row + index} of {self.source} is blank")
            return record
        values = self.table.slice(index, 1).to_pylist()[0]
        for key, value in values.items():
            if isinstance(value, bytes):  # a binary (not string) Parquet column
                values[key] = value.decode(self.encoding, errors="surrogateescape")
        return RawRecord(self.source, self.first_row + index, values, values)

    def _line(self, index: int) -> str:
        if self._line_ends is None:
            self._line_ends = np.flatnonzero(np.frombuffer(self.lines, np.uint8) == ord("\n"))
        start = int(self._line_ends[index - 1]) + 1 if index else 0
        end = int(self._line_ends[index]) if index < len(self._line_ends) else len(self.lines)
        return self.lines[start:end].decode("utf-8")


class Progress:
    """The last row read from a file (the row reader's number), for the message of a file
    that breaks off."""

    def __init__(self) -> None:
        self.row = 0


def _records_in_blocks(
    records: Iterator[RawRecord], source: str, progress: Progress
) -> Iterator[RowBlock]:
    def counted():
        for record in records:
            progress.row = record.row
            yield record

    rows = counted()
    while chunk := list(itertools.islice(rows, BLOCK_ROWS)):
        yield RowBlock(source, chunk[0].row, records=chunk)


def _first_line_header(path: str, encoding: str) -> list[str] | None:
    """The header when it is the file's first physical line with balanced quotes (what the
    fast reader assumes); None otherwise (then the row reader finds it)."""
    with sources.open_text(path, encoding, newline="") as text:
        line = text.readline()
    if line.count('"') % 2 or "\ufffd" in line:
        return None
    try:
        fields = next(csv.reader([line]), [])
    except csv.Error:
        return None
    if not any(f.strip() for f in fields):
        return None
    return sources.csv_header(iter([fields]))


def _ascii_compatible(encoding: str) -> bool:
    """Whether the encoding writes line ends, quotes and commas as ASCII bytes that no other
    character contains (utf-8, latin-1, cp1252, ...): then a file can be cut at its b"\\n"."""
    try:
        return '\n\r",a'.encode(encoding).endswith(b'\n\r",a') and (b"\n".decode(encoding) == "\n")
    except (LookupError, UnicodeError):
        return False


def _byte_chunks(stream, size: int) -> Iterator[bytes]:
    """The stream in pieces of about `size` bytes, each ending at a line end (b"\\n") but the
    last."""
    rest = b""
    while data := stream.read(size):
        data = rest + data
        cut = data.rfind(b"\n") + 1
        rest, data = data[cut:], data[:cut]
        if data:
            yield data
    if rest:
        yield rest


def _arrow_chunk(chunk: bytes, encoding: str, header: list[str], skip: int) -> pa.Table | None:
    """The rows of `chunk` (whole lines) as pyarrow reads them; None when pyarrow would read them
    otherwise than `readers.read_csv` (the row reader reads that chunk)."""
    try:
        table = pa_csv.read_csv(
            io.BytesIO(chunk),
            read_options=pa_csv.ReadOptions(
                column_names=header,
                skip_rows=skip,
                block_size=len(chunk) + 1,  # one block: a line never straddles two
                encoding=encoding,
                use_threads=False,
            ),
            # A field spanning lines or a row of the wrong width raises: the row reader
            # takes over there.
            parse_options=pa_csv.ParseOptions(newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                include_columns=[name for name in header if name],  # as `readers.read_csv`
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, ValueError):  # any problem: the row reader decides
        return None
    for column in table.columns:
        # pyarrow lets a quoted field run on over a line end even so: one that did is a quote
        # left open (or a field that spans lines), the row reader's case.
        if pc.any(pc.match_substring_regex(column, "[\r\n]")).as_py():
            return None
    if not chunk.endswith((b"\n", b"\r")):
        # The file's last line, without a line end: pyarrow closes a quote left open there,
        # the row reader dead-letters it. The row reader decides.
        last = chunk[max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1 :]
        if readers.ends_inside_quote(last.decode(encoding, errors="surrogateescape")):
            return None
    return table


class _ChunkLines:
    """The physical lines of byte chunks for the row reader, decoded (ends kept), taking the
    next chunk when one runs out; `at_chunk_end` when the last line given ended a chunk."""

    def __init__(self, first: bytes, rest: Iterator[bytes], encoding: str) -> None:
        self._rest, self._encoding = rest, encoding
        self._lines: collections.deque[str] = collections.deque()
        self._add(first)
        self.at_chunk_end = False

    def _add(self, chunk: bytes) -> None:
        text = chunk.decode(self._encoding, errors="surrogateescape")
        self._lines.extend(io.StringIO(text, newline="").readlines())

    def __iter__(self):
        return self

    def __next__(self) -> str:
        while not self._lines:
            self._add(next(self._rest))  # StopIteration: the end of the file
        line = self._lines.popleft()
        self.at_chunk_end = not self._lines
        return line


def read_csv_blocks(path: str, encoding: str, progress: Progress) -> Iterator[RowBlock]:
    """The rows of a CSV file, cut into chunks of whole lines: pyarrow reads each chunk that it
    reads as `readers.read_csv` would, the row reader the others, from the first line of such
    a chunk to the first record that ends a chunk; so a bad row costs the speed of its chunk
    only. The row reader reads the whole file when the header is not its first line or the
    encoding cannot be cut at line ends."""
    header = _first_line_header(path, encoding)
    if header is None or not _ascii_compatible(encoding):
        yield from _records_in_blocks(readers.read_csv(path, encoding), path, progress)
        return
    stream = sources.open_binary(path)
    try:
        chunks = _byte_chunks(stream, _CSV_BLOCK_BYTES)
        skip = 1  # the header line, in the first chunk
        for chunk in chunks:
            table = _arrow_chunk(chunk, encoding, header, skip)
            if table is not None:
                if table.num_rows:
                    yield RowBlock(path, progress.row + 1, table=table)
                    progress.row += table.num_rows
                skip = 0
                continue
            lines = _ChunkLines(chunk, chunks, encoding)
            if skip:
                next(lines)  # the header, a line of its own (`_first_line_header`)
                skip = 0
            records = readers.csv_records(
                path, lines, header, progress.row, stop=lambda lines=lines: lines.at_chunk_end
            )
            yield from _records_in_blocks(records, path, progress)
    finally:
        stream.close()


def read_parquet_blocks(path: str, encoding: str, progress: Progress) -> Iterator[RowBlock]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        for batch in pq.ParquetFile(fh).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            if batch.num_rows:
                table = pa.Table.from_batches([batch])
                yield RowBlock(path, progress.row + 1, table=table, encoding=encoding)
                progress.row += batch.num_rows


def _text_pieces(stream, encoding: str, size: int) -> Iterator[str]:
    """The text of a binary stream, decoded as `sources.open_text` decodes it (invalid bytes
    as surrogate escapes), in pieces of whole lines of about `size` bytes each; a line ends
    at "\\n", "\\r\\n" or "\\r", as for the row reader (universal newlines)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    rest = ""
    while data := stream.read(size):
        text = rest + decoder.decode(data)
        # A "\r" as the last character may be the first half of "\r\n": it waits.
        cut = max(text.rfind("\n"), text.rfind("\r", 0, len(text) - 1)) + 1
        rest = text[cut:]
        if cut:
            yield text[:cut]
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest


def read_jsonl_blocks(
    path: str, encoding: str, progress: Progress, schema: RawSchema
) -> Iterator[RowBlock]:
    """The rows of a JSONL file, decoded in pieces of whole lines: pyarrow reads each piece
    that it reads as `readers.read_jsonl` would (`json_blocks.read_lines`), the row reader
    the others, line by line; so an odd line costs the speed of its piece only."""
    arrow_schema = json_blocks.arrow_schema(schema)
    stream = sources.open_binary(path)
    line = 0  # the lines before the piece (blank ones too: rows are numbered by line)
    try:
        for piece in _text_pieces(stream, encoding, _JSONL_BLOCK_BYTES):
            text = piece.lstrip("\ufeff") if line == 0 else piece  # as the row reader
            read = json_blocks.read_lines(text, arrow_schema)
            if read is not None:
                table, lines = read
                yield RowBlock(path, line + 1, table=table, lines=lines)
                line += table.num_rows
                progress.row = line
                continue
            lines = io.StringIO(piece, newline=None).readlines()
            records = readers.jsonl_records(path, lines, line)
            yield from _records_in_blocks(records, path, progress)
            line += len(lines)
    finally:
        stream.close()


def read_blocks(
    path: str,
    fmt: str,
    encoding: str,
    progress: Progress | None = None,
    schema: RawSchema | None = None,
) -> Iterator[RowBlock]:
    """Every row of one file, in blocks; `progress` follows the last row read. `schema` types
    JSONL for pyarrow's JSON reader; without it the row reader reads JSONL."""
    progress = progress or Progress()
    if fmt == sources.CSV:
        return read_csv_blocks(path, encoding, progress)
    if fmt == sources.PARQUET:
        return read_parquet_blocks(path, encoding, progress)
    if schema is not None:
        return read_jsonl_blocks(path, encoding, progress, schema)
    return _records_in_blocks(readers.read_jsonl(path, encoding), path, progress)


def renamed_columns(block: RowBlock, schema: RawSchema | None) -> dict[str, Any]:
    """The block's columns by the log's names (`schema.columns` maps the export's)."""
    if block.table is None:
        raise ValueError("a block of records has no columns")
    names = block.table.column_names
    if schema is not None and schema.columns:
        names = list(schema.rename(dict.fromkeys(names)))
        kept = set(schema.rename({n: n for n in block.table.column_names}).values())
        return {
            new: block.table.column(old)
            for old, new in zip(
                [n for n in block.table.column_names if n in kept], names, strict=True
            )
        }
    return {name: block.table.column(name) for name in names}


class ReadBlocks(beam.DoFn):
    """(path, format) -> the RowBlocks of that file, streamed. A file that breaks off or holds
    corrupt data stops the run with `readers.UnreadableFile`, naming the last row read.
    `schema` types JSONL for pyarrow's JSON reader (see `read_blocks`)."""

    def __init__(self, encoding: str, schema: RawSchema | None = None) -> None:
        self._encoding = encoding
        self._schema = schema

    def setup(self) -> None:
        csv.field_size_limit(readers.CSV_FIELD_LIMIT)

    def process(self, element: tuple[str, str]) -> Iterator[RowBlock]:
        path, fmt = element
        progress = Progress()
        try:
            yield from read_blocks(path, fmt, self._encoding, progress, self._schema)
        except readers.UNREADABLE as err:
            raise readers.UnreadableFile(path, progress.row, err) from None
