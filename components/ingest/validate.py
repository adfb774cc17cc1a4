"""Row validation: a raw record becomes a clean row, a filtered row or a dead-letter record.

Fields are checked in contract order (text columns, the market when the schema declares
markets, funnel counts, position, ranking features)
and the first problem decides the reason; then the funnel is checked and, with the "clip"
policy, repaired. A dead-letter record is {"source", "row", "reason", "field", "message",
"raw"}, and its message names the row, the file and the field.
"""

from __future__ import annotations

import contextlib
import decimal
import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from components.ingest import errors
from components.ingest.readers import RawRecord
from contract import schema as S

_INTEGER = re.compile(r"[+-]?\d+")
_MAX_SHOWN = 60  # characters of a bad value quoted in a message

KEPT, FILTERED, DEAD_LETTER = "kept", "filtered", "dead_letter"


class Checked(NamedTuple):
    """The outcome of validating one record.

    `row` (for kept and filtered rows) holds every text column (str), the funnel counts (int),
    position (float, 0.0 when unknown) and the ranking features present (float).
    """

    outcome: str
    row: dict[str, Any] | None = None
    dead_letter: dict[str, Any] | None = None
    clipped: bool = False


class _Problem(Exception):
    def __init__(self, reason: str, field: str | None, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.field, self.detail = reason, field, detail


# A surrogate that stands for no undecodable byte: a JSON escape such as "\ud800" without
# its pair (json.loads keeps it).
_LONE_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def printable(value: Any) -> Any:
    """`value` with undecodable bytes (surrogate escapes) shown as \\xNN and a lone surrogate
    of a JSON escape as \\uXXXX, recursively."""
    if isinstance(value, str):
        value = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", value)
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, list):
        return [printable(v) for v in value]
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    return value


# In a repr: an escaped backslash, or a byte kept as a surrogate escape (U+DC80..U+DCFF).
_REPR_ESCAPE = re.compile(r"\\\\|\\udc([89a-f][0-9a-f])")


def _quoted(value: Any) -> str:
    """repr(value), with each undecodable byte shown once as \\xNN (repr of `printable`'s
    text would double its backslash); a Decimal (a JSON integer too long for int()) as its
    digits."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    return _REPR_ESCAPE.sub(lambda m: f"\\x{m[1]}" if m[1] else m[0], repr(value))


def _shown(value: Any) -> str:
    """`value` quoted, at most _MAX_SHOWN characters; a long text is cut between characters,
    never inside an escape such as \\xe9."""
    text = _quoted(value)
    if len(text) <= _MAX_SHOWN:
        return text
    if not isinstance(value, str):
        return text[: _MAX_SHOWN - 3] + "..."
    low, high = 0, len(value)  # the longest prefix whose quoted form fits
    while low < high:
        middle = (low + high + 1) // 2
        if len(_quoted(value[:middle])) <= _MAX_SHOWN - 3:
            low = middle
        else:
            high = middle - 1
    return _quoted(value[:low]) + "..."


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)  # typed inputs (Parquet, JSON via pandas) write NaN for missing
    return isinstance(value, str) and not value.strip()


def _is_missing_number(value: Any) -> bool:
    """A missing numeric value, the same in every format: absent, empty, a float NaN (Parquet,
    JSON) or the text "NaN" (CSV exporters write it for a missing value)."""
    if isinstance(value, str) and value.strip().lower() == "nan":
        return True
    return _is_missing(value)


def _check_encoding(field: str, value: Any, encoding: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise _Problem(
                errors.INVALID_ENCODING,
                field,
                f"is not valid {encoding} text: {_shown(value)}; the file seems to use another "
                f"encoding, set the input encoding to it (e.g. iso-8859-1: the pipeline's --input-encoding, "
                "or --encoding of python -m components.ingest)",
            ) from err


def _text(field: str, value: Any, required: bool) -> str:
    if _is_missing(value):
        if required:
            raise _Problem(errors.MISSING_VALUE, field, "is empty or missing")
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Problem(errors.MALFORMED_ROW, field, f"is not text: {_shown(value)}")


MAX_COUNT = 2**63 - 1  # tf.Example's int64
_COUNT_DIGITS = len(str(MAX_COUNT))
_BEYOND_COUNT = "is beyond the largest count, 2^63 - 1: "


def _count(field: str, value: Any) -> int:
    if _is_missing_number(value):
        raise _Problem(errors.MISSING_VALUE, field, "is empty or missing")
    number: int | None = None
    shown = value
    if isinstance(value, decimal.Decimal):  # a Parquet decimal, or a JSON integer too long
        if value.is_finite() and value == value.to_integral_value():
            value = int(value)  # exact, of any size (never printed: `shown` is the Decimal)
        else:
            value = shown = float(value) if value.is_finite() else math.nan
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            if len(text.lstrip("+-").lstrip("0")) > _COUNT_DIGITS:
                # Beyond any count: decided on the text, as int() refuses over 4,300 digits.
                if text.startswith("-"):
                    raise _Problem(errors.NEGATIVE_COUNT, field, f"is negative: {_shown(value)}")
                raise _Problem(errors.OUT_OF_RANGE, field, _BEYOND_COUNT + _shown(value))
            number = int(text)
        elif "_" not in text:
            try:
                as_float = float(text)
            except ValueError:
                as_float = math.nan
            if as_float.is_integer():
                number = int(as_float)  # "12.0", as some exporters write counts
    if number is None:
        raise _Problem(errors.NOT_AN_INTEGER, field, f"is not an integer: {_shown(shown)}")
    if number < 0:
        text = str(number) if number >= -MAX_COUNT else _shown(shown)  # never 4,300 digits
        raise _Problem(errors.NEGATIVE_COUNT, field, f"is negative: {text}")
    if number > MAX_COUNT:
        raise _Problem(errors.OUT_OF_RANGE, field, _BEYOND_COUNT + _shown(shown))
    return number


def _number(field: str, value: Any) -> float:
    number = math.nan
    too_large = False  # a finite number written beyond a float's range, such as 10^400
    if isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool):
        try:
            number = float(value)  # Decimal: a Parquet decimal column (NaN stays NaN)
        except OverflowError:  # an integer beyond a float (JSON keeps 10^400 as an int)
            number, too_large = math.inf, True
        too_large |= isinstance(value, decimal.Decimal) and value.is_finite()
    elif isinstance(value, str) and "_" not in value:
        with contextlib.suppress(ValueError):
            number = float(value.strip())
        too_large = "inf" not in value.lower()  # float() gives inf for "1e400" too
    if not math.isfinite(number):
        too_large &= math.isinf(number)
        detail = "is beyond the range of a 64-bit float" if too_large else "is not a number"
        raise _Problem(errors.NOT_A_NUMBER, field, f"{detail}: {_shown(value)}")
    return number


def _in_range(field: str, value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        raise _Problem(errors.OUT_OF_RANGE, field, f"is {value:g}, below the minimum {low:g}")
    if high is not None and value > high:
        raise _Problem(errors.OUT_OF_RANGE, field, f"is {value:g}, above the maximum {high:g}")
    return value


def _parse(values: Mapping[str, Any], schema: S.RawSchema, encoding: str) -> dict:
    row: dict[str, Any] = {}
    for field in S.TEXT_COLUMNS:
        value = values.get(field)
        _check_encoding(field, value, encoding)
        row[field] = _text(field, value, field in S.REQUIRED_TEXT_COLUMNS)
    if schema.markets:
        value = values.get(S.MARKET)
        _check_encoding(S.MARKET, value, encoding)
        row[S.MARKET] = market_of(_text(S.MARKET, value, True), schema)
    for field in schema.funnel:
        value = values.get(field)
        _check_encoding(field, value, encoding)
        row[field] = _count(field, value)
    position = values.get(S.POSITION)
    _check_encoding(S.POSITION, position, encoding)
    row[S.POSITION] = (
        0.0
        if _is_missing_number(position)
        else _in_range(S.POSITION, _number(S.POSITION, position), 0.0, None)
    )
    for feature in schema.ranking_features:
        value = values.get(feature.name)
        _check_encoding(feature.name, value, encoding)
        if _is_missing_number(value):
            if feature.required:
                raise _Problem(errors.MISSING_VALUE, feature.name, "is empty or missing")
            continue
        number = _number(feature.name, value)
        row[feature.name] = _in_range(feature.name, number, feature.min_value, feature.max_value)
    return row


def market_of(value: str, schema: S.RawSchema) -> str:
    """The declared market a row's (stripped) `market` value names, in lower case."""
    market = value.lower()
    if market not in schema.markets:
        raise _Problem(
            errors.UNKNOWN_MARKET,
            S.MARKET,
            f"is {_shown(value)}, not one of the schema's markets {list(schema.markets)}",
        )
    return market


def _funnel(row: dict[str, Any], funnel: Sequence[str], funnel_policy: str) -> bool:
    """Check (and with "clip", repair) the `funnel` counts in place; True when one was clipped."""
    clipped = False
    for upper, lower in itertools.pairwise(funnel):
        if row[lower] <= row[upper]:
            continue
        if funnel_policy == errors.CLIP:
            row[lower] = row[upper]
            clipped = True
            continue
        raise _Problem(
            errors.FUNNEL_VIOLATION,
            lower,
            f"is {row[lower]}, more than {upper} ({row[upper]}); the funnel needs "
            f"{' >= '.join(funnel)}",
        )
    return clipped


def dead_letter(record: RawRecord, reason: str, field: str | None, detail: str) -> dict:
    where = f"row {record.row} of {os.path.basename(record.source)}"
    message = f"{where}: field '{field}' {detail}" if field else f"{where}: {detail}"
    return {
        "source": record.source,
        "row": record.row,
        "reason": reason,
        "field": field,
        "message": printable(message),
        "raw": printable(record.raw),
    }


def check_record(
    record: RawRecord, schema: S.RawSchema, encoding: str, funnel_policy: str
) -> Checked:
    """Validate one record; rows with too few impressions come back as FILTERED."""
    if record.values is None:
        return Checked(
            DEAD_LETTER,
            dead_letter=dead_letter(record, errors.MALFORMED_ROW, None, record.problem or ""),
        )
    try:
        row = _parse(record.values, schema, encoding)
        clipped = _funnel(row, schema.funnel, funnel_policy)
    except _Problem as problem:
        return Checked(
            DEAD_LETTER,
            dead_letter=dead_letter(record, problem.reason, problem.field, problem.detail),
        )
    if row[S.IMPRESSIONS] <= S.MIN_IMPRESSIONS_EXCLUSIVE:
        return Checked(FILTERED, row=row, clipped=clipped)
    return Checked(KEPT, row=row, clipped=clipped)
