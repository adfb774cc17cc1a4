"""Simulated engagement for judged query-product pairs, and the text features the adapters
compute. Shared by the adapters of datasets that have relevance grades but no engagement
(Home Depot, ESCI). Everything is seeded.

Ranking features, computed from the text only:
- lexical_score: share of the query's words in the title (text_features.lexical_score);
- title_words: words in the title;
- query_words: words in the query;
- catalog_queries: how many distinct queries the product was judged for (a popularity proxy).

Click model, per query q with candidates i (the products judged for q), from a grade
r_i in [0, 1] (1: a perfect match):
1. Traffic: the query's page is shown n_q ~ round(LogNormal(ln 40, 0.8)) + 1 times.
2. Production ranking: candidates are ordered by lexical_score + N(0, 0.25) noise; position
   p_i = 1, 2, ... in that order (the log's `position`). Every candidate is shown on each
   page view: impressions_i = n_q.
3. Examination (position bias): P(examine | p) = 1 / p^0.7.
4. Attraction: P(click | examined) = 0.02 + 0.6 r^2.
   clicks_i ~ Binomial(n_q, P(examine) P(click | examined)).
5. add_to_cart_i ~ Binomial(clicks_i, 0.05 + 0.45 r); purchases_i ~ Binomial(add_to_cart_i,
   0.2 + 0.5 r).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from components.ingest.text_features import lexical_score, tokens
from contract import schema as S

FEATURES = (
    S.RankingFeature("lexical_score", min_value=0.0, max_value=1.0, relevance_score=True),
    S.RankingFeature("title_words", log1p=True, min_value=0.0),
    S.RankingFeature("query_words", log1p=True, min_value=0.0),
    S.RankingFeature("catalog_queries", log1p=True, min_value=0.0),
)
SCHEMA = S.RawSchema(ranking_features=FEATURES)


def add_text_features(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (query, product_id, title) with the four text features added, in place."""
    frame["lexical_score"] = [
        lexical_score(q, t) for q, t in zip(frame[S.QUERY], frame[S.TITLE], strict=True)
    ]
    frame["title_words"] = [len(tokens(t)) for t in frame[S.TITLE]]
    frame["query_words"] = [len(tokens(q)) for q in frame[S.QUERY]]
    frame["catalog_queries"] = frame.groupby(S.PRODUCT_ID)[S.QUERY].transform("nunique")
    return frame


def simulate_engagement(frame: pd.DataFrame, grade: np.ndarray, seed: int) -> pd.DataFrame:
    """Impressions, clicks, add-to-cart, purchases and position for each row of `frame`
    (sorted by query, with lexical_score), from `grade` in [0, 1]; see the module doc."""
    grade = np.clip(np.asarray(grade, dtype=float), 0.0, 1.0)
    if len(grade) != len(frame):
        raise ValueError(f"one grade per row: {len(grade)} grades for {len(frame)} rows")
    rng = np.random.default_rng(seed)
    noisy = frame["lexical_score"].to_numpy() + rng.normal(0.0, 0.25, len(frame))
    position = (
        pd.Series(noisy, index=frame.index)
        .groupby(frame[S.QUERY])
        .rank(ascending=False, method="first")
        .to_numpy()
    )
    views = {
        q: int(round(math.exp(rng.normal(math.log(40.0), 0.8)))) + 1
        for q in frame[S.QUERY].unique()
    }
    impressions = frame[S.QUERY].map(views).to_numpy()
    examine = 1.0 / position**0.7
    clicks = rng.binomial(impressions, examine * (0.02 + 0.6 * grade**2))
    carts = rng.binomial(clicks, 0.05 + 0.45 * grade)
    purchases = rng.binomial(carts, 0.2 + 0.5 * grade)
    frame[S.IMPRESSIONS] = impressions
    frame[S.CLICKS] = clicks
    frame[S.ADD_TO_CART] = carts
    frame[S.PURCHASES] = purchases
    frame[S.POSITION] = position.astype(float)
    return frame


def raw_log(
    frame: pd.DataFrame, grade: np.ndarray, seed: int, keep: tuple[str, ...]
) -> pd.DataFrame:
    """The raw engagement log of judged pairs: `frame` holds query, product_id, title and any
    optional text columns; missing optional text columns are empty; `keep` are extra columns
    carried to the output (ignored by ingest, e.g. the human grade)."""
    frame[S.QUERY] = frame[S.QUERY].astype(str).str.strip()
    frame[S.TITLE] = frame[S.TITLE].astype(str).str.strip()
    frame = frame.sort_values([S.QUERY, S.PRODUCT_ID], kind="stable")
    grade = np.asarray(grade, dtype=float)[frame.index.to_numpy()]
    frame = frame.reset_index(drop=True)
    add_text_features(frame)
    simulate_engagement(frame, grade, seed)
    for column in S.OPTIONAL_TEXT_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
        frame[column] = frame[column].fillna("").astype(str)
    columns = [*S.TEXT_COLUMNS, *SCHEMA.feature_names, *SCHEMA.funnel, S.POSITION, *keep]
    return frame[columns]
