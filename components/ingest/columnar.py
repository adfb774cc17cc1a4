"""Validation of a block of rows at once: `validate`'s rules over columns.

An Arrow block (see `blocks`) is checked column by column with pyarrow.compute and numpy. A
row passes there when every field is plainly valid:
- the required text columns are not blank (every text value is stripped);
- each funnel count is a plain decimal integer of at most 18 digits (or an integer column);
- position and each ranking feature is missing (empty, blank, "NaN", null) or a plain decimal
  number (or a number column) that is finite and within the feature's range, and a required
  feature is present;
- the funnel holds: each count of `schema.funnel` is at most the one before (impressions >=
  clicks >= add_to_cart >= purchases by default).

Every other row (a problem, but also anything unusual: " 12" with spaces, "1_000", "+3", an
exponent in a count, a Parquet decimal, a binary column), every row of a block of records,
and every later copy of a repeated (query, product_id) pair is decided row by row by
`validate.check_record` and the duplicate rule, exactly as before, so reasons, messages and
the kept values are the row checks' own. Bad rows are rare, so the row checks cost little.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.ingest import counts as counts_lib
from components.ingest import errors, split, validate
from components.ingest.blocks import RowBlock
from contract import schema as S

_COUNT = r"^[0-9]{1,18}$"
_NUMBER = r"^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$"
_MISSING_NUMBER = r"^[ \t\r\n]*([nN][aA][nN])?[ \t\r\n]*$"
_LARGEST_EXACT = 2.0**53  # a float count above this is left to the row checks


@dataclasses.dataclass
class KeptRows:
    """The usable rows of one block that go to one split, as typed columns: every text column
    (list of str, stripped), the funnel counts (int64), position (float64, 0 = unknown) and
    the ranking features (float64, NaN where an optional one is absent); `queries` holds the
    split's distinct normalised queries among them. `file_index` and `first_row` place the
    block in the input (the index of its file among the run's files, and its first row), the
    order in which the split's files are written."""

    split: str
    columns: dict[str, Any]
    queries: set[str]
    file_index: int = 0
    first_row: int = 0

    def __len__(self) -> int:
        return len(self.columns[S.QUERY])


class BlockOutcome(NamedTuple):
    kept: list[KeptRows]
    dead_letters: list[dict]
    events: collections.Counter


def _values(column: pa.ChunkedArray | None, n: int, encoding: str) -> list:
    """A column as Python values (None when absent), binary decoded as the row reader does."""
    if column is None:
        return [None] * n
    values = column.to_pylist()
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        values = [
            v.decode(encoding, errors="surrogateescape") if v is not None else None for v in values
        ]
    return values


def _plain(column: pa.ChunkedArray) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _is_text(array: pa.Array) -> bool:
    return pa.types.is_string(array.type) or pa.types.is_large_string(array.type)


def _bools(array: pa.Array) -> np.ndarray:
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _counts(column: pa.ChunkedArray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, plainly valid) of a funnel count column."""
    if column is None:
        return np.zeros(n, np.int64), np.zeros(n, bool)
    array = _plain(column)
    if _is_text(array):
        clean = _bools(pc.match_substring_regex(array, _COUNT))
        values = pc.cast(pc.if_else(pa.array(clean), array, "0"), pa.int64())
        return np.array(values.to_numpy(zero_copy_only=False), np.int64), clean
    if pa.types.is_integer(array.type):
        # Compared as integers in their own type, never through float64: every count up to
        # 2^63 - 1 is kept exactly; a uint64 beyond it is left to the row checks (out_of_range).
        values = array.fill_null(0).to_numpy(zero_copy_only=False)
        clean = _bools(array.is_valid()) & (values >= 0) & (values <= validate.MAX_COUNT)
        return np.where(clean, values, 0).astype(np.int64), clean
    if pa.types.is_floating(array.type):
        values = pc.cast(array.fill_null(np.nan), pa.float64()).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            clean = (values >= 0) & (values < _LARGEST_EXACT) & (values == np.floor(values))
        return np.where(clean, values, 0).astype(np.int64), clean
    return np.zeros(n, np.int64), np.zeros(n, bool)


def _numbers(column: pa.ChunkedArray | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, missing, plainly valid number) of a numeric column; values are NaN where
    missing or not plainly valid."""
    if column is None:
        return np.full(n, np.nan), np.ones(n, bool), np.zeros(n, bool)
    array = _plain(column)
    if _is_text(array):
        missing = _bools(pc.match_substring_regex(array, _MISSING_NUMBER)) | ~_bools(
            array.is_valid()
        )
        clean = _bools(pc.match_substring_regex(array, _NUMBER))
        values = pc.cast(pc.if_else(pa.array(clean), array, "0"), pa.float64())
        values = values.to_numpy(zero_copy_only=False)
    elif pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        values = pc.cast(array, pa.float64(), safe=False).fill_null(np.nan)
        values = values.to_numpy(zero_copy_only=False).astype(np.float64)
        missing = np.isnan(values)
        clean = ~missing
    else:
        return np.full(n, np.nan), np.zeros(n, bool), np.zeros(n, bool)
    clean &= np.isfinite(values)
    return np.where(clean, values, np.nan), missing, clean


def _in_range(values: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    inside = np.ones(len(values), bool)
    if low is not None:
        inside &= values >= low
    if high is not None:
        inside &= values <= high
    return inside


def check_columns(
    columns: Mapping[str, pa.ChunkedArray], n: int, schema: S.RawSchema
) -> tuple[np.ndarray, dict[str, Any]]:
    """(plainly valid, typed columns) of a block's columns (by the log's names); the typed
    values of a row that is not plainly valid are placeholders."""
    ok = np.ones(n, bool)
    typed: dict[str, Any] = {}
    for field in S.TEXT_COLUMNS:
        column = columns.get(field)
        if column is not None and not _is_text(_plain(column)):
            ok[:] = False  # numbers or bytes in a text column: the row checks type them
            typed[field] = [""] * n
            continue
        values = [v.strip() if v is not None else "" for v in _values(column, n, "utf-8")]
        if field in S.REQUIRED_TEXT_COLUMNS:
            ok &= np.fromiter((bool(v) for v in values), bool, n)
        typed[field] = values
    if schema.markets:
        column = columns.get(S.MARKET)
        if column is not None and not _is_text(_plain(column)):
            ok[:] = False
            typed[S.MARKET] = [""] * n
        else:
            values = [
                v.strip().lower() if v is not None else "" for v in _values(column, n, "utf-8")
            ]
            ok &= np.fromiter((v in schema.markets for v in values), bool, n)
            typed[S.MARKET] = values
    for field in schema.funnel:
        typed[field], clean = _counts(columns.get(field), n)
        ok &= clean
    values, missing, clean = _numbers(columns.get(S.POSITION), n)
    ok &= missing | (clean & (np.nan_to_num(values, nan=-1.0) >= 0.0))
    typed[S.POSITION] = np.where(missing, 0.0, np.nan_to_num(values))
    for feature in schema.ranking_features:
        values, missing, clean = _numbers(columns.get(feature.name), n)
        ok &= (missing & (not feature.required)) | (
            clean & _in_range(np.nan_to_num(values), feature.min_value, feature.max_value)
        )
        typed[feature.name] = np.where(missing, np.nan, values)
    for upper, lower in itertools.pairwise(schema.funnel):
        ok &= typed[lower] <= typed[upper]
    return ok, typed


def pair_digest(query: Any, product: Any) -> bytes | None:
    """A 16-byte digest of a row's (query, product_id) pair as read: the query normalised as
    for the split, the id stripped as validation strips it; None when either is absent or
    blank (such a row is dead-lettered by validation). The state kept per distinct pair while
    duplicates are found is this and three integers, not the strings (collisions: ~2^-64 for
    billions of pairs)."""
    if query is None or product is None:
        return None
    key = (split.normalize_query(str(query)), str(product).strip())
    if not key[0] or not key[1]:
        return None
    # surrogatepass: text the reader could not decode (surrogate escapes), or a lone surrogate
    # of a JSON escape, is digested as it is (and dead-lettered by validation), instead of
    # failing the digest.
    pair = f"{key[0]}\x1f{key[1]}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(pair, digest_size=16).digest()


def pair_digests(block: RowBlock, schema: S.RawSchema | None) -> list[bytes | None]:
    """The pair digest of every row of a block (None for a row without a usable pair)."""
    if block.table is None:
        out = []
        for record in block.records:
            values = record.values
            if values is not None and schema is not None:
                values = schema.rename(values)
            out.append(
                None
                if values is None
                else pair_digest(values.get(S.QUERY), values.get(S.PRODUCT_ID))
            )
        return out
    columns = block_columns(block, schema)
    n = len(block)
    queries = _values(columns.get(S.QUERY), n, block.encoding)
    products = _values(columns.get(S.PRODUCT_ID), n, block.encoding)
    return [pair_digest(q, p) for q, p in zip(queries, products, strict=True)]


def block_columns(block: RowBlock, schema: S.RawSchema | None) -> dict[str, pa.ChunkedArray]:
    """An Arrow block's columns by the log's names (`schema.columns` maps the export's)."""
    columns = {name: block.table.column(name) for name in block.table.column_names}
    return schema.rename(columns) if schema is not None else columns


def _record(block: RowBlock, index: int, schema: S.RawSchema):
    record = block.record(int(index))
    if record.values is not None and schema.columns:
        record = record._replace(values=schema.rename(record.values))
    return record


def _duplicate_letter(record, first: Sequence[int], files: Sequence[str]) -> dict:
    values = record.values
    query = split.normalize_query(str(values[S.QUERY]))
    product = str(values[S.PRODUCT_ID]).strip()
    detail = (
        f"the pair (query {query!r}, product_id {product!r}) already came in row "
        f"{first[1]} of {os.path.basename(files[first[0]])}"
    )
    return validate.dead_letter(record, errors.DUPLICATE_PAIR, None, detail)


def check_block(
    block: RowBlock,
    schema: S.RawSchema,
    encoding: str,
    funnel_policy: str,
    duplicates: Mapping[bytes, Sequence[int]],
    files: Sequence[str],
) -> BlockOutcome:
    """Validate a block: its kept rows by split, its dead letters and its outcome counts.
    `duplicates` maps each pair digest that comes more than once to the (file index, row) of
    its first row; `files` are the run's input paths, in that index's order."""
    n = len(block)
    events: collections.Counter = collections.Counter({counts_lib.ROWS_READ_EVENT: n})
    if block.table is not None:
        ok, typed = check_columns(block_columns(block, schema), n, schema)
    else:
        ok, typed = np.zeros(n, bool), _empty_typed(n, schema)
    outcome = np.full(n, validate.KEPT, dtype=object)
    dead_letters = []
    if duplicates:
        here = files.index(block.source) if block.source in files else -1
        first_rows = block.rows()
        for i, digest in enumerate(pair_digests(block, schema)):
            first = duplicates.get(digest) if digest is not None else None
            if first is not None and tuple(first) != (here, first_rows[i]):
                letter = _duplicate_letter(_record(block, i, schema), first, files)
                dead_letters.append(letter)
                events[counts_lib.dead_letter_event(errors.DUPLICATE_PAIR)] += 1
                outcome[i], ok[i] = validate.DEAD_LETTER, True  # decided: no row check
    for i in np.flatnonzero(~ok):
        checked = validate.check_record(_record(block, i, schema), schema, encoding, funnel_policy)
        if checked.clipped:
            events[counts_lib.CLIPPED_EVENT] += 1
        outcome[i] = checked.outcome
        if checked.outcome == validate.DEAD_LETTER:
            dead_letters.append(checked.dead_letter)
            events[counts_lib.dead_letter_event(checked.dead_letter["reason"])] += 1
        else:
            _fill(typed, i, checked.row, schema)
    low = typed[S.IMPRESSIONS] <= S.MIN_IMPRESSIONS_EXCLUSIVE
    outcome[(outcome == validate.KEPT) & low] = validate.FILTERED
    events[counts_lib.FILTERED_EVENT] += int((outcome == validate.FILTERED).sum())
    dead_letters.sort(key=lambda d: d["row"])
    return BlockOutcome(_by_split(typed, outcome == validate.KEPT, events), dead_letters, events)


def _empty_typed(n: int, schema: S.RawSchema) -> dict[str, Any]:
    typed: dict[str, Any] = {c: [""] * n for c in _text_columns(schema)}
    typed.update({c: np.zeros(n, np.int64) for c in schema.funnel})
    typed[S.POSITION] = np.zeros(n)
    typed.update({f: np.full(n, np.nan) for f in schema.feature_names})
    return typed


def _fill(typed: dict[str, Any], i: int, row: Mapping[str, Any], schema: S.RawSchema) -> None:
    """Row `i` of the typed columns from the row checks' typed row."""
    for column in (*_text_columns(schema), *schema.funnel, S.POSITION):
        typed[column][i] = row[column]
    for name in schema.feature_names:
        typed[name][i] = row.get(name, np.nan)


def _text_columns(schema: S.RawSchema) -> tuple[str, ...]:
    """The text columns of a typed row: the contract's, and the market when declared."""
    return S.TEXT_COLUMNS + ((S.MARKET,) if schema.markets else ())


def _by_split(
    typed: dict[str, Any], kept: np.ndarray, events: collections.Counter
) -> list[KeptRows]:
    where: dict[str, list[int]] = collections.defaultdict(list)
    queries: dict[str, set[str]] = collections.defaultdict(set)
    seen: dict[str, tuple[str, str]] = {}
    for i in np.flatnonzero(kept):
        query = typed[S.QUERY][i]
        if query not in seen:
            normalised = split.normalize_query(query)
            seen[query] = (split.split_of_normalised(normalised), normalised)
        name, normalised = seen[query]
        where[name].append(i)
        queries[name].add(normalised)
    out = []
    for name in S.SPLITS:
        if not where[name]:
            continue
        index = np.asarray(where[name])
        columns = {
            c: ([v[i] for i in index] if isinstance(v, list) else v[index])
            for c, v in typed.items()
        }
        events[counts_lib.KEPT_EVENT] += len(index)
        events[counts_lib.split_rows_event(name)] += len(index)
        out.append(KeptRows(name, columns, queries[name]))
    return out
