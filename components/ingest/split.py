"""Stable train/eval/test assignment by query.

A query's split depends only on its normalised text (`normalize_query`) through SHA-256, so it
is the same on every machine, runner and run, and no query is in two splits.
"""

from __future__ import annotations

import hashlib
import unicodedata

from contract import schema as S

_BUCKETS = 100


def _boundaries() -> tuple[tuple[int, str], ...]:
    if sum(S.SPLIT_PERCENT[s] for s in S.SPLITS) != _BUCKETS:
        raise ValueError(f"split percentages must add up to 100, got {S.SPLIT_PERCENT}")
    upper, bounds = 0, []
    for split in S.SPLITS:
        upper += S.SPLIT_PERCENT[split]
        bounds.append((upper, split))
    return tuple(bounds)


_BOUNDARIES = _boundaries()


def normalize_query(query: str) -> str:
    """The one normalisation of a query, for the duplicate-pair key and the split hash:
    Unicode NFKC, case-folded, format characters (zero-width joiners and spaces, byte order
    marks, soft hyphens: category Cf) removed, control characters (Cc) as spaces, whitespace
    collapsed to single spaces. "Blue  JEANS\u200d" and "blue jeans" are one query."""
    if query.isascii() and query.isprintable():
        # The same result, quicker: NFKC leaves printable ASCII as it is, case-folding it is
        # lower-casing, and it holds no format or control character.
        return " ".join(query.lower().split())
    return _normalize_any(query)


def _normalize_any(query: str) -> str:
    text = unicodedata.normalize("NFKC", query)
    text = "".join(
        " " if category == "Cc" else c
        for c in text
        if (category := unicodedata.category(c)) != "Cf"
    )
    return " ".join(unicodedata.normalize("NFKC", text.casefold()).split())


def bucket_of(query: str) -> int:
    """The query's bucket in [0, 100): the first 8 bytes of SHA-256 of the normalised query."""
    return _bucket_of_normalised(normalize_query(query))


def _bucket_of_normalised(normalised: str) -> int:
    digest = hashlib.sha256(normalised.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def split_of(query: str) -> str:
    """The split ('train', 'eval' or 'test') every row of this query goes to."""
    return split_of_normalised(normalize_query(query))


def split_of_normalised(normalised: str) -> str:
    """`split_of` for a query already normalised (`normalize_query`)."""
    bucket = _bucket_of_normalised(normalised)
    for upper, split in _BOUNDARIES:
        if bucket < upper:
            return split
    raise AssertionError(f"bucket {bucket} is outside [0, {_BUCKETS})")
