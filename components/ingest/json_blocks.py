"""JSON lines read by pyarrow's JSON reader, where it reads them exactly as the row reader does.

`read_lines` gives pyarrow a piece of a JSONL file (whole lines, decoded) with an explicit
schema (`arrow_schema`: text columns as strings, the counts, position and ranking features as
float64, every other key ignored), and keeps its table only when each row of it is the row
reader's (`readers.jsonl_record`, `json.loads`) object of that line:

- every line is one object: each line starts with "{" and ends with "}" (no blank line, no
  space around the object, no lone carriage return, which the row reader takes for a line
  end), and pyarrow finds as many rows as there are lines. A string cannot hold a raw line
  end in either reader, so an object that ran on to the next line would meet that line's "{"
  where JSON wants "," or "}" and fail, and a second value on a line adds a row;
- pyarrow's parser is RapidJSON's strict JSON (as `json.loads` is) but also takes NaN, Inf
  and Infinity, with or without a minus sign, where `json.loads` takes only NaN, Infinity and
  -Infinity: a piece with such a value anywhere is left to the row reader;
- a key of the schema given twice, a nested or boolean value, a number in a text column, a
  text in a number column, a lone surrogate escape or an exponent beyond a float (1e400) make
  pyarrow raise: the row reader reads that piece;
- json.loads cannot read a line nested deeper than Python's recursion limit, pyarrow can: a
  piece with a line of more than 256 "{" and "[" is left to the row reader;
- an integer -0 is -0.0 to pyarrow and 0.0 to the row checks: a piece with a negative zero in
  a number column is left to the row reader;
- pyarrow reads UTF-8 only: the piece is the decoded text (in the file's encoding) written as
  UTF-8, and a piece with bytes invalid in the encoding (surrogate escapes) is left to the row
  reader, which dead-letters those rows as `invalid_encoding`.

pyarrow's streaming reader (`open_json`) cannot go on after a line it does not take, so the
file is streamed in pieces instead (`blocks.read_jsonl_blocks`), each read by `read_json` in
one block: memory stays that of a piece.

Every other value is the same in both: strings alike, numbers parsed to the nearest float by
both, integers as counts exact below 2^53 (the column checks leave larger ones to the row
checks, which read the line again with `json.loads`).
"""

from __future__ import annotations

import io
import re

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from contract import schema as S

# A value NaN, Inf or Infinity (RapidJSON's kParseNanAndInfFlag), after the ":", "," or "["
# before a value; one inside a string only costs that piece the row reader's speed.
_NAN_OR_INF = re.compile(rb"[:,\[][ \t]*-?(?:NaN|Inf)")
_MAX_BLOCK = 2**31 - 1  # pyarrow's block size is an int32
# Brackets that open on one line, past which the row reader reads it: json.loads stops at
# Python's recursion limit (about 1,000 levels, fewer deep in a call stack), pyarrow does not.
_MAX_OPENERS = 256


def arrow_schema(schema: S.RawSchema) -> pa.Schema:
    """The explicit schema of a JSONL export, by the export's key names (`schema.columns`):
    text columns (and the market when declared) as strings, the funnel counts, position and
    ranking features as float64. A log column whose name the schema maps to another column
    (and that has no source of its own) is not read."""
    text = [*S.TEXT_COLUMNS, *((S.MARKET,) if schema.markets else ())]
    numbers = [*schema.funnel, S.POSITION, *schema.feature_names]
    mapped = dict(schema.columns)
    sources = set(mapped.values())
    fields = []
    for columns, kind in ((text, pa.string()), (numbers, pa.float64())):
        for column in columns:
            if column in mapped:
                fields.append(pa.field(mapped[column], kind))
            elif column not in sources:  # else the export's `column` is another column's
                fields.append(pa.field(column, kind))
    return pa.schema(fields)


def _lines_of_one_object(data: bytes) -> int | None:
    """How many lines `data` (no carriage returns) has when every line starts with "{", ends
    with "}" and holds at most _MAX_OPENERS brackets that open; None otherwise."""
    if not data.startswith(b"{") or not data.endswith((b"}", b"}\n")):
        return None
    text = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(text == ord("\n"))
    if not (text[ends - 1] == ord("}")).all():
        return None
    starts = ends[ends < len(text) - 1] + 1  # the lines after a line end
    if not (text[starts] == ord("{")).all():
        return None
    openers = np.flatnonzero((text == ord("{")) | (text == ord("[")))
    if np.bincount(np.searchsorted(ends, openers)).max() > _MAX_OPENERS:
        return None
    return len(ends) + (not data.endswith(b"\n"))


def _has_negative_zero(table: pa.Table) -> bool:
    for column in table.columns:
        if pa.types.is_floating(column.type):
            values = column.to_numpy()
            if np.any(np.signbit(values) & (values == 0)):
                return True
    return False


def read_lines(text: str, schema: pa.Schema) -> tuple[pa.Table, bytes] | None:
    """(table, the lines as UTF-8) of `text`, whole JSON lines, when pyarrow reads every line
    as `readers.jsonl_record` does (see the module's notes); None otherwise, and then the row
    reader reads them. Row i of the table is line i of the UTF-8 lines."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # bytes invalid in the file's encoding
        return None
    if b"\r" in data:
        if data.count(b"\r") != data.count(b"\r\n"):
            return None  # a lone carriage return ends a line for the row reader
        data = data.replace(b"\r\n", b"\n")
    # Also what keeps pyarrow from its crash on a first value null (apache/arrow#47409).
    lines = _lines_of_one_object(data)
    if lines is None:
        return None
    if (b"NaN" in data or b"Inf" in data) and _NAN_OR_INF.search(data):
        return None
    try:
        table = pa_json.read_json(
            io.BytesIO(data),
            read_options=pa_json.ReadOptions(
                use_threads=False, block_size=min(len(data) + 1, _MAX_BLOCK)
            ),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowException:  # anything pyarrow does not take: the row reader decides
        return None
    if table.num_rows != lines or _has_negative_zero(table):
        return None
    return table, data
