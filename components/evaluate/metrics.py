"""Ranking metrics as plain functions over numpy arrays.

`auc` scores one task as a binary classifier over all (query, product) pairs; `ndcg_at_k`
scores it as a ranker, one list per query. AUC is scikit-learn's; NDCG is computed here,
as scikit-learn's `ndcg_score` defines it (ties averaged), for several cut-offs in one pass
over the queries (the tests compare the two). Both add the conventions of this project:
undefined values are NaN (never an exception), and queries whose NDCG is undefined are
counted rather than silently averaged in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score


@dataclasses.dataclass(frozen=True)
class NdcgResult:
    """NDCG@k averaged over queries.

    Args:
        mean: mean NDCG@k over the queries with at least one positive label; NaN when there
            are none.
        queries_used: how many queries went into the mean.
        queries_without_positive: queries whose labels are all zero; their NDCG is undefined
            (the ideal DCG is 0), so they are left out of the mean.
    """

    mean: float
    queries_used: int
    queries_without_positive: int


def _as_1d(name: str, values: ArrayLike, dtype: type | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _check_scores(scores: np.ndarray) -> None:
    if not np.all(np.isfinite(scores)):
        bad = int(np.count_nonzero(~np.isfinite(scores)))
        raise ValueError(f"scores must be finite, got {bad} NaN or infinite value(s)")


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC of `scores` against binary `labels`, over all pairs.

    The probability that a random positive is scored above a random negative (ties count
    one half). With a single class present (or no examples) the AUC is undefined and
    float('nan') is returned, so a split without, say, any purchase does not crash an
    evaluation; the gate treats NaN as a failed check.

    Args:
        labels: 0/1 labels, shape [n].
        scores: finite scores, shape [n]; higher means more likely positive.
    """
    y = _as_1d("labels", labels, dtype=np.float64)
    s = _as_1d("scores", scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    classes = np.unique(y)
    if not np.isin(classes, (0.0, 1.0)).all():
        raise ValueError(f"auc needs 0/1 labels, got values {classes[:10].tolist()}")
    _check_scores(s)
    if classes.size < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


def ndcg_at_k(query_ids: ArrayLike, labels: ArrayLike, scores: ArrayLike, k: int) -> NdcgResult:
    """NDCG@k per query, averaged over the queries that have a positive label.

    Gain is the label itself (for 0/1 labels this equals 2^rel - 1), the discount is
    1 / log2(rank + 1), and the ideal DCG comes from the labels sorted in decreasing order.
    Products with tied scores get the average over every order of the tie (as
    sklearn.metrics.ndcg_score does). A query with a single product and a positive label has
    NDCG 1. Graded, non-negative labels (human relevance grades) are accepted as well.

    Args:
        query_ids: the query of each row, shape [n]; any hashable values (strings, ints).
        labels: non-negative gains, shape [n].
        scores: finite model scores, shape [n].
        k: cut-off rank, >= 1.
    """
    return ndcg_at_ks(query_ids, labels, scores, (k,))[k]


def ndcg_at_ks(
    query_ids: ArrayLike, labels: ArrayLike, scores: ArrayLike, ks: Sequence[int]
) -> dict[int, NdcgResult]:
    """`ndcg_at_k` for every k in ks, computed in one pass: {k: NdcgResult}."""
    per_k = ndcg_per_query_at(query_ids, labels, scores, ks)
    queries = int(np.unique(np.asarray(query_ids)).size)
    results = {}
    for k, per_query in per_k.items():
        used = len(per_query)
        mean = float(np.mean(list(per_query.values()))) if used else math.nan
        results[k] = NdcgResult(
            mean=mean, queries_used=used, queries_without_positive=queries - used
        )
    return results


def ndcg_per_query(query_ids: ArrayLike, labels: ArrayLike, scores: ArrayLike, k: int) -> dict:
    """NDCG@k of every query that has a positive label, as {query: value}.

    Same conventions as `ndcg_at_k` (whose mean is the mean of these values); the input
    for paired comparisons of two models over the same queries.
    """
    return ndcg_per_query_at(query_ids, labels, scores, (k,))[k]


def ndcg_per_query_at(
    query_ids: ArrayLike, labels: ArrayLike, scores: ArrayLike, ks: Sequence[int]
) -> dict[int, dict]:
    """{k: {query: NDCG@k}} for several cut-offs at once (one pass over the queries)."""
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
    if not ks:
        raise ValueError("ndcg_per_query_at needs at least one cut-off in ks")
    q = _as_1d("query_ids", query_ids)
    y = _as_1d("labels", labels, dtype=np.float64)
    s = _as_1d("scores", scores, dtype=np.float64)
    if not (q.shape == y.shape == s.shape):
        raise ValueError(
            f"query_ids, labels and scores differ in length: {q.shape[0]}, {y.shape[0]}, {s.shape[0]}"
        )
    if y.size and (not np.all(np.isfinite(y)) or y.min() < 0):
        raise ValueError(f"labels must be finite and non-negative, got minimum {y.min()}")
    _check_scores(s)
    return _ndcg_by_query(q, y, s, tuple(int(k) for k in ks))


def _discount_cumsum(n: int, ks: np.ndarray) -> np.ndarray:
    """Row i: cumulative sums of the discounts 1/log2(rank + 1) cut at ks[i], with a
    leading 0, so that [i, b] - [i, a] is the discount of ranks a+1..b at cut-off ks[i]."""
    discount = 1.0 / np.log2(np.arange(n) + 2.0)
    cut = np.where(np.arange(n)[None, :] < ks[:, None], discount[None, :], 0.0)
    return np.concatenate([np.zeros((ks.size, 1)), np.cumsum(cut, axis=1)], axis=1)


def _dcg(gains: np.ndarray, scores: np.ndarray, cumsum: np.ndarray) -> np.ndarray:
    """DCG at every cut-off of `cumsum`, ties in `scores` averaged over their orderings:
    each group of tied products shares its mean gain over the ranks it occupies."""
    _, group, counts = np.unique(-scores, return_inverse=True, return_counts=True)
    mean_gain = np.bincount(group, weights=gains, minlength=counts.size) / counts
    ends = np.cumsum(counts)
    starts = ends - counts
    return (cumsum[:, ends] - cumsum[:, starts]) @ mean_gain


def _ndcg_by_query(q: np.ndarray, y: np.ndarray, s: np.ndarray, ks: tuple[int, ...]) -> dict:
    result: dict[int, dict] = {k: {} for k in ks}
    if q.size == 0:
        return result
    # Group rows by query: a stable sort keeps the input order inside each query.
    keys, inverse = np.unique(q, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    boundaries = np.flatnonzero(np.diff(inverse[order])) + 1
    k_array = np.asarray(ks)
    cumsums: dict[int, np.ndarray] = {}
    for rows in np.split(order, boundaries):
        gains = y[rows]
        if gains.sum() <= 0:
            continue
        key = keys[inverse[rows[0]]]
        key = key.item() if hasattr(key, "item") else key
        n = rows.size
        if n not in cumsums:
            cumsums[n] = _discount_cumsum(n, k_array)
        cumsum = cumsums[n]
        ideal = cumsum[:, 1:] - cumsum[:, :-1]  # the discount of each rank, per cut-off
        ndcg = _dcg(gains, s[rows], cumsum) / (ideal @ np.sort(gains)[::-1])
        for k, value in zip(ks, ndcg, strict=True):
            result[k][key] = float(value)
    return result
