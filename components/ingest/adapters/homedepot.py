"""Home Depot Product Search Relevance (train.csv, ISO-8859-1) -> the raw engagement log.

The data has human relevance grades (mean of at least three raters, 1.0 to 3.0) but no
engagement, so engagement is simulated with a click model. Everything is seeded.

Ranking features, computed from the text only:
- lexical_score: share of the query's words in the title (text_features.lexical_score);
- title_words: words in the title;
- query_words: words in the query;
- catalog_queries: how many distinct queries the product was judged for (a popularity proxy).

Click model, per query q with candidates i (the products judged for q):
1. Traffic: the query's page is shown n_q ~ round(LogNormal(ln 40, 0.8)) + 1 times.
2. Production ranking: candidates are ordered by lexical_score + N(0, 0.25) noise; position
   p_i = 1, 2, ... in that order (the log's `position`). Every candidate is shown on each
   page view: impressions_i = n_q.
3. Examination (position bias): P(examine | p) = 1 / p^0.7.
4. Attraction from the grade g in [1, 3], r = (g - 1) / 2 in [0, 1]: P(click | examined) =
   0.02 + 0.6 r^2. clicks_i ~ Binomial(n_q, P(examine) P(click | examined)).
5. add_to_cart_i ~ Binomial(clicks_i, 0.05 + 0.45 r); purchases_i ~ Binomial(add_to_cart_i,
   0.2 + 0.5 r).
The human grade is kept in the `relevance` column (ignored by ingest) so that ranking can also
be evaluated against it.
"""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from components import schema as S
from components.ingest.text_features import lexical_score, tokens

RELEVANCE = "relevance"
ENCODING = "iso-8859-1"
SCHEMA = S.RawSchema(
    ranking_features=(
        S.RankingFeature("lexical_score", min_value=0.0, max_value=1.0),
        S.RankingFeature("title_words", log1p=True, min_value=0.0),
        S.RankingFeature("query_words", log1p=True, min_value=0.0),
        S.RankingFeature("catalog_queries", log1p=True, min_value=0.0),
    )
)
_SOURCE_COLUMNS = ("product_uid", "product_title", "search_term", "relevance")


def read_source(path: str | Path) -> pd.DataFrame:
    """train.csv or train.csv.zip of the competition, decoded as ISO-8859-1."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise ValueError(f"{path} should hold one CSV file, found {names}")
            raw = archive.read(names[0])
    else:
        raw = path.read_bytes()
    frame = pd.read_csv(io.BytesIO(raw), encoding=ENCODING, dtype={"product_uid": str})
    missing = [c for c in _SOURCE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is missing column(s) {missing}: is it the Home Depot train.csv?")
    return frame


def simulate(source: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The raw engagement log (one row per judged query-product pair), see the module doc."""
    rng = np.random.default_rng(seed)
    frame = source.rename(
        columns={"search_term": S.QUERY, "product_uid": S.PRODUCT_ID, "product_title": S.TITLE}
    )[[S.QUERY, S.PRODUCT_ID, S.TITLE, RELEVANCE]].copy()
    frame[S.QUERY] = frame[S.QUERY].astype(str).str.strip()
    frame[S.TITLE] = frame[S.TITLE].astype(str).str.strip()
    frame = frame.sort_values([S.QUERY, S.PRODUCT_ID], kind="stable").reset_index(drop=True)

    frame["lexical_score"] = [
        lexical_score(q, t) for q, t in zip(frame[S.QUERY], frame[S.TITLE], strict=True)
    ]
    frame["title_words"] = [len(tokens(t)) for t in frame[S.TITLE]]
    frame["query_words"] = [len(tokens(q)) for q in frame[S.QUERY]]
    frame["catalog_queries"] = frame.groupby(S.PRODUCT_ID)[S.QUERY].transform("nunique")

    grade = ((frame[RELEVANCE].to_numpy(float) - 1.0) / 2.0).clip(0.0, 1.0)
    noisy = frame["lexical_score"].to_numpy() + rng.normal(0.0, 0.25, len(frame))
    frame["_noisy"] = noisy
    position = frame.groupby(S.QUERY)["_noisy"].rank(ascending=False, method="first").to_numpy()
    views = {
        q: int(round(math.exp(rng.normal(math.log(40.0), 0.8)))) + 1
        for q in frame[S.QUERY].unique()
    }
    impressions = frame[S.QUERY].map(views).to_numpy()
    examine = 1.0 / position**0.7
    clicks = rng.binomial(impressions, examine * (0.02 + 0.6 * grade**2))
    carts = rng.binomial(clicks, 0.05 + 0.45 * grade)
    purchases = rng.binomial(carts, 0.2 + 0.5 * grade)

    for column in (S.PRODUCT_TYPE, S.BRAND, S.COLOR, S.GENDER, S.DESCRIPTION):
        frame[column] = ""
    frame[S.IMPRESSIONS] = impressions
    frame[S.CLICKS] = clicks
    frame[S.ADD_TO_CART] = carts
    frame[S.PURCHASES] = purchases
    frame[S.POSITION] = position.astype(float)
    columns = [*S.TEXT_COLUMNS, *SCHEMA.feature_names, *S.FUNNEL, S.POSITION, RELEVANCE]
    return frame[columns]
