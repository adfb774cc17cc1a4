"""Relevance labels from engagement, for shops without human raters (after the Walmart
personalised-ranking work: click-through rate, click position and semantic similarity).

For the pairs (q, i) of a split, with clicks c, impressions n and logged position p
(1 = top; 0 or missing = unknown, taken as 1):

1. Examination: e(p) = p^-eta (eta = 1 by default: the share of shoppers who look that far
   down, the usual position-bias model; the debiasing divides the clicks by it).
2. Position-debiased click rate, smoothed towards the query's own rate by `prior`
   pseudo-impressions (a pair seen 6 times is not trusted like one seen 600 times):

       ctr(q, i) = (c_i + prior m_q) / (n_i e(p_i) + prior),
       m_q = sum_i c_i / sum_i n_i e(p_i).

3. Semantic similarity s(q, i): the cosine of the text encoder's query and product vectors
   (the pretrained encoder, untrained by the ranker: the label does not follow the model).
4. The label, on the scale of a 0-3 grade: the within-query percentile ranks of both
   (0 = lowest of the query, 1 = highest; ties share their mean rank), mixed by `weight`
   (0.75 by default: on Home Depot the label then agrees with the human grades as well as the
   debiased click rate does, and at 0.5 less well; benchmarks/results/
   relevance_labels_homedepot.md):

       relevance(q, i) = 3 (weight pct_q(ctr) + (1 - weight) pct_q(s)).

A query with one pair gets 1.5 (no ranking to tell). Percentiles make the two signals
comparable whatever their scales, and the label ranks products within a query, which is
all that NDCG and a ranking task need of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

MAX_GRADE = 3.0


def examination(position: np.ndarray, eta: float = 1.0) -> np.ndarray:
    """e(p) = p^-eta, with p < 1 (unknown) taken as 1."""
    return np.maximum(np.asarray(position, dtype=np.float64), 1.0) ** -eta


def debiased_ctr(
    query: np.ndarray,
    clicks: np.ndarray,
    impressions: np.ndarray,
    position: np.ndarray,
    eta: float = 1.0,
    prior: float = 10.0,
) -> np.ndarray:
    """The smoothed, position-debiased click rate of each pair (step 2 of the module doc)."""
    examined = np.asarray(impressions, dtype=np.float64) * examination(position, eta)
    frame = pd.DataFrame({"q": query, "c": np.asarray(clicks, np.float64), "e": examined})
    totals = frame.groupby("q")[["c", "e"]].transform("sum")
    rate = totals["c"] / totals["e"].clip(lower=1e-12)
    return ((frame["c"] + prior * rate) / (frame["e"] + prior)).to_numpy()


def within_query_percentile(query: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's rank within its query scaled to [0, 1] (ties: their mean rank); 0.5 for
    a query with one pair."""
    frame = pd.DataFrame({"q": query, "v": np.asarray(values, np.float64)})
    ranks = frame.groupby("q")["v"].rank(method="average")
    sizes = frame.groupby("q")["v"].transform("size")
    return np.where(sizes > 1, (ranks - 1) / (sizes - 1).clip(lower=1), 0.5)


def engagement_relevance(
    query: np.ndarray,
    clicks: np.ndarray,
    impressions: np.ndarray,
    position: np.ndarray,
    similarity: np.ndarray,
    weight: float = 0.75,
    eta: float = 1.0,
    prior: float = 10.0,
) -> np.ndarray:
    """The 0-3 relevance label of each pair (the module doc's formula)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    ctr = debiased_ctr(query, clicks, impressions, position, eta, prior)
    return MAX_GRADE * (
        weight * within_query_percentile(query, ctr)
        + (1.0 - weight) * within_query_percentile(query, similarity)
    )


def encoder_similarity(
    query_texts: list[str],
    product_texts: list[str],
    preset: str,
    cache_dir: str,
    query_length: int = 16,
    product_length: int = 48,
) -> np.ndarray:
    """Cosine of the untrained encoder's mean-pooled query and product-text vectors (each
    distinct text encoded once, through the train step's text cache in `cache_dir`), one per
    (query, product) pair: s(q, i) of the module doc."""
    from components.train.text_cache import TextCache
    from model.encoder import TextEncoder
    from model.presets import load_encoder
    from model.text_preprocessor import TextPreprocessor

    backbone, tokenizer = load_encoder(preset, texts=[*query_texts, *product_texts], seed=0)
    cache = TextCache(
        cache_dir,
        TextEncoder(backbone, fine_tune_layers=0),
        TextPreprocessor(tokenizer, query_length, product_length),
    )
    query = cache.get("query", [q.encode() for q in query_texts]).vectors()
    product = cache.get("product", [p.encode() for p in product_texts]).vectors()
    norms = np.linalg.norm(query, axis=1) * np.linalg.norm(product, axis=1)
    return np.sum(query * product, axis=1) / np.maximum(norms, 1e-12)


def spearman_per_query(query: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """(mean over queries of Spearman's rank correlation of `a` and `b` within the query,
    queries counted): queries where either is constant have none and are left out."""
    frame = pd.DataFrame({"q": query, "a": a, "b": b})
    correlations = []
    for _, rows in frame.groupby("q"):
        if len(rows) < 3 or rows["a"].nunique() < 2 or rows["b"].nunique() < 2:
            continue
        correlations.append(stats.spearmanr(rows["a"], rows["b"]).statistic)
    return (float(np.mean(correlations)) if correlations else float("nan"), len(correlations))
