"""The row readers of CSV and JSONL: every row of a file, with its source and 1-based row
number (Parquet is read in blocks by `blocks`, its rows numbered by position). `blocks` reads
CSV and JSONL with pyarrow wherever pyarrow reads them exactly as these readers do, and with
these readers elsewhere.

CSV rows are numbered by data record (header excluded; a quoted field may span lines), JSONL
rows by line number. A CSV column without a name in the header (a spreadsheet's trailing empty
columns) counts for the width of a row, and its fields are ignored like an extra column's. Text is decoded with errors="surrogateescape",
so bytes that are invalid in the declared encoding survive as surrogates and validation can
dead-letter the row that holds them instead of failing the whole file.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import pyarrow as pa

from components.ingest import sources
from components.ingest.errors import IngestError

CSV_FIELD_LIMIT = 64 * 1024 * 1024  # long product descriptions are fine


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


class _UnclosedQuote(Exception):
    """A quoted field ran to the end of the file, or over too many lines that are whole rows."""


# Lines inside one quoted field that are whole rows on their own, past which the quote is taken
# for one left open (a description with a few such lines is still read as one field).
MAX_WHOLE_ROW_LINES = 100


class _Lines:
    """The physical lines of a CSV text for `csv.reader`, one record at a time, so that a
    malformed record costs its own line only: `taken` holds the lines of the record being
    read, and `restart_after_first()` gives the lines after its first one back.

    A line inside a quoted field that is a whole row on its own (the header's width, balanced
    quotes) makes the record `suspect`: either the quote was left open and the field swallows
    the next rows, or a legal multi-line field holds such a line. `read_csv` decides once the
    record ends (`_one_strict_row`)."""

    def __init__(self, text, width: int) -> None:
        self._text = text
        self._pending: collections.deque[str] = collections.deque()
        self._width = width
        self.taken: list[str] = []
        self.suspect = 0  # whole-row lines inside the record being read

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self._pending:
            line = self._pending.popleft()
        else:
            try:
                line = next(self._text)
            except StopIteration:
                if self.taken:  # the file ends inside a quoted field
                    raise _UnclosedQuote from None
                raise
        if self.taken and _is_whole_row(line, self._width):
            self.suspect += 1
            if self.suspect > MAX_WHOLE_ROW_LINES:
                self._pending.appendleft(line)
                raise _UnclosedQuote
        self.taken.append(line)
        return line

    def next_record(self) -> None:
        self.taken = []
        self.suspect = 0

    def idle(self) -> bool:
        """No line given back to read again (called between records)."""
        return not self._pending

    def restart_after_first(self) -> str:
        """The first line of the record being read; the lines after it are read again."""
        first, rest = self.taken[0], self.taken[1:]
        self._pending.extendleft(reversed(rest))
        self.taken = []
        self.suspect = 0
        return first


def _one_strict_row(lines: list[str], width: int) -> bool:
    """Whether `lines` are one record of `width` fields whose every quote closes properly
    (strict CSV: a closing quote followed by a comma or the line end). A quote left open that
    swallowed the next rows closes, if ever, at the next row's opening quote, and the field
    then runs on past it: not strict, and rarely of the header's width."""
    try:
        records = list(csv.reader(lines, strict=True))
    except csv.Error:
        return False
    return len(records) == 1 and len(records[0]) == width


def _is_whole_row(line: str, width: int) -> bool:
    """Whether `line` parses on its own (balanced quotes) into exactly `width` fields."""
    if width < 2 or line.count('"') % 2 or not line.strip():
        return False
    try:
        return len(next(csv.reader([line]), [])) == width
    except csv.Error:
        return False


def _excerpt(line: str, limit: int = 1000) -> str:
    line = line.rstrip("\r\n")
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line)} characters)"


UNCLOSED_QUOTE = "has a quote that is never closed (its field would run into the next rows)"


def read_csv(path: str, encoding: str) -> Iterator[RawRecord]:
    """Rows of a CSV file. A malformed record costs its own row only: a quote left open (its
    field would swallow the following rows), a field over the size limit or any other CSV
    error dead-letters that row's first line, and reading goes on at the next line.

    A quote is taken for one left open when its field runs to the end of the file, or runs over
    lines that are whole rows of their own and the record does not end as one strict row of
    the header's width (or runs over more than MAX_WHOLE_ROW_LINES of them)."""
    with sources.open_text(path, encoding, newline="") as text:
        header = sources.csv_header(csv.reader(text))  # leaves `text` at the next line
        if header is None:
            return
        yield from csv_records(path, text, header)


def csv_records(
    path: str,
    text: Iterator[str],
    header: list[str],
    row: int = 0,
    stop: Callable[[], bool] | None = None,
) -> Iterator[RawRecord]:
    """The rows of `text` (the physical lines after the header, ends kept), numbered from
    `row` + 1. With `stop`, reading ends at the first record boundary where `stop()` is true
    (`blocks` hands the rest back to pyarrow there)."""
    lines = _Lines(text, len(header))
    reader = csv.reader(lines)
    while True:
        if stop is not None and lines.idle() and stop():
            return
        lines.next_record()
        try:
            fields = next(reader)
            if lines.suspect and not _one_strict_row(lines.taken, len(header)):
                raise _UnclosedQuote
        except StopIteration:
            return
        except (_UnclosedQuote, csv.Error) as err:
            row += 1
            unclosed = isinstance(err, _UnclosedQuote) or lines.suspect > 0
            first = lines.restart_after_first() if lines.taken else ""
            problem = UNCLOSED_QUOTE if unclosed else f"is not valid CSV: {err}"
            yield RawRecord(path, row, None, _excerpt(first), problem)
            reader = csv.reader(lines)  # a fresh parser state at the next line
            continue
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # a blank line
        row += 1
        if len(fields) != len(header):
            problem = f"has {len(fields)} fields but the header has {len(header)}"
            yield RawRecord(path, row, None, fields, problem)
        else:
            values = {k: v for k, v in zip(header, fields, strict=True) if k}
            yield RawRecord(path, row, values, values)


def ends_inside_quote(line: str) -> bool:
    """Whether the CSV parser, at the end of `line` (the last of a file, no line end), is
    still inside a quoted field: the row reader's quote left open to the end of the file."""
    asked_more = []

    def once():
        yield line
        asked_more.append(True)

    with contextlib.suppress(csv.Error, StopIteration):
        next(csv.reader(once()))
    return bool(asked_more)


NESTED_TOO_DEEPLY = "is nested too deeply to read (arrays and objects inside each other)"


def read_jsonl(path: str, encoding: str) -> Iterator[RawRecord]:
    """Rows of a JSONL file, numbered by line (a blank line counts but is no row)."""
    with sources.open_text(path, encoding) as text:
        yield from jsonl_records(path, text)


def jsonl_records(path: str, lines: Iterable[str], row: int = 0) -> Iterator[RawRecord]:
    """The rows of JSON `lines` (the physical lines of a file, universal newlines), numbered
    from `row` + 1; `blocks` reads a file's chunks with this where pyarrow does not."""
    for line_no, line in enumerate(lines, start=row + 1):
        record = jsonl_record(path, line_no, line)
        if record is not None:
            yield record


def jsonl_record(path: str, row: int, line: str) -> RawRecord | None:
    """Line `row` of a JSONL file as a record (`json.loads`, see `sources.load_json`); None
    for a blank line. A byte order mark is dropped from the first line."""
    stripped = (line.lstrip("\ufeff") if row == 1 else line).strip()
    if not stripped:
        return None
    try:
        value = sources.load_json(stripped)
    except json.JSONDecodeError as err:
        return RawRecord(path, row, None, stripped, f"is not valid JSON: {err.msg}")
    except RecursionError:
        return RawRecord(path, row, None, stripped, NESTED_TOO_DEEPLY)
    if not isinstance(value, dict):
        problem = f"is a JSON {type(value).__name__}, not an object"
        return RawRecord(path, row, None, stripped, problem)
    return RawRecord(path, row, value, value)


class UnreadableFile(IngestError):
    """A file that breaks off (a truncated .gz) or holds corrupt data (bad Parquet pages): its
    rows past the last one read cannot be recovered, so the run stops with this one line."""

    def __init__(self, path: str, last_row: int, cause: BaseException) -> None:
        where = f"after row {last_row}" if last_row else "before its first row"
        super().__init__(
            f"cannot read {path} {where}: {type(cause).__name__}: {cause}. The file is "
            "truncated or corrupt; export it again (nothing was written for this run)"
        )


# What reading a broken file raises: gzip/bz2 (EOFError, OSError, zlib.error), Parquet and
# Arrow (pyarrow's ArrowException, OSError).
UNREADABLE = (EOFError, OSError, zlib.error, pa.ArrowException)
