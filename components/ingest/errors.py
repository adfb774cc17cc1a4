"""Ingest errors and the stable reason strings of dead-lettered rows."""

from __future__ import annotations


class IngestError(ValueError):
    """The input cannot be ingested at all (no file, empty file, missing columns, bad option).

    Raised before the Beam job starts (or after it, when no row was read), with a message that
    names the file and what is wrong.
    """


# Why a row was dead-lettered. These strings are stable: dashboards and tests key on them.
MISSING_VALUE = "missing_value"  # a required field is empty or absent
NOT_A_NUMBER = "not_a_number"  # a ranking feature or position is not a finite number
NOT_AN_INTEGER = "not_an_integer"  # a funnel count is not a whole number
NEGATIVE_COUNT = "negative_count"  # a funnel count is below zero
OUT_OF_RANGE = "out_of_range"  # a feature outside its [min, max], position < 0, a count > int64
FUNNEL_VIOLATION = "funnel_violation"  # clicks > impressions, add_to_cart > clicks, ...
INVALID_ENCODING = "invalid_encoding"  # text bytes that are not valid in the declared encoding
MALFORMED_ROW = "malformed_row"  # wrong number of CSV fields, a JSONL line that is no object
DUPLICATE_PAIR = "duplicate_pair"  # the (query, product_id) pair already came in an earlier row
UNKNOWN_MARKET = "unknown_market"  # a market the schema does not declare

REASONS = (
    MISSING_VALUE,
    NOT_A_NUMBER,
    NOT_AN_INTEGER,
    NEGATIVE_COUNT,
    OUT_OF_RANGE,
    FUNNEL_VIOLATION,
    INVALID_ENCODING,
    MALFORMED_ROW,
    DUPLICATE_PAIR,
    UNKNOWN_MARKET,
)

# What to do with rows whose funnel counts are inconsistent.
REJECT = "reject"  # dead-letter them (reason funnel_violation)
CLIP = "clip"  # clip each count to the stage above it and keep the row
FUNNEL_POLICIES = (REJECT, CLIP)


DEFAULT_MAX_BAD_SHARE = 0.1  # the pipeline stops when more than 10% of the rows are unusable


def check_bad_share(max_bad_share: float) -> float:
    if not isinstance(max_bad_share, int | float) or not 0.0 <= max_bad_share <= 1.0:
        raise IngestError(f"max_bad_share must be a share between 0 and 1, got {max_bad_share!r}")
    return float(max_bad_share)


def check_funnel_policy(funnel_policy: str) -> str:
    if funnel_policy not in FUNNEL_POLICIES:
        raise IngestError(
            f"funnel_policy must be one of {', '.join(FUNNEL_POLICIES)}, got {funnel_policy!r}"
        )
    return funnel_policy
