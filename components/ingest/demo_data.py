"""The embedded demo shop: a seeded synthetic engagement log in the raw ingest format.

The log has one row per (query, product) pair aggregated over a period, with the columns of
`contract.schema` and the ranking features of `DEMO_SCHEMA` (see `COLUMNS`).

Catalog. Each product has a type, brand, color, gender (empty for types without one, and for some
apparel whose gender is unknown) and up to two attributes; its title is built from them, e.g.
"Nordic Trail women's waterproof hiking boots, olive". Each product also has two hidden traits,
quality and fame. Price is lognormal around its type's median (times a brand premium); rating
(0-5, 0 when there are no reviews) rises with quality; review_count and popularity are
heavy-tailed counts that rise with fame and quality; discount is 0 for most products and
otherwise uniform in [0.05, 0.5].

Queries. A query asks for a product type, often with words other than the titles' ("trainers" for
running shoes, "couch" for a sofa, "gray" for grey), and sometimes for a color, brand, gender or
attribute. Each query gets 10-30 candidates: products of the asked type (favouring close matches),
products of related types, and unrelated products. The hidden graded relevance of a candidate is
3 for the right type with every asked color, brand, gender and attribute, one less per unmet
request (at least 1), 1 for a related type and 0 otherwise. `lexical_score` is the share of
the query's words found in the title, so it rises with relevance but misses synonyms.

Click model. A noisy production ranker (relevance, lexical score, popularity and Gaussian noise)
orders the candidates; rank r is the position they are shown at, and `position` is r plus
display jitter (the mean position over the period). With S sessions for the query (lognormal):

    impressions ~ Binomial(S, share / (1 + 0.12 (r - 1))),   share ~ Uniform(0.3, 1)
    clicks      ~ Binomial(impressions, r^-0.6 * attract(relevance, rating, discount))
    add_to_cart ~ Binomial(clicks, sigmoid(-2.6 + 0.75 rel + 0.35 (rating - 4) + 1.5 discount
                                           - 0.6 log(price / type median price)))
    purchases   ~ Binomial(add_to_cart, sigmoid(-1.2 + 0.5 rel + 0.3 (rating - 4) + discount
                                                - 0.8 log(price / type median price)))

with attract = (0.03, 0.10, 0.30, 0.55)[relevance] * exp(0.15 (rating - 4)) * (1 + 0.3 discount)
(the rating terms are 0 for unrated products). The funnel impressions >= clicks >= add_to_cart >=
purchases therefore always holds, and low-ranked candidates of rare queries get few impressions
(some 5 or fewer, which ingest filters out).

Markets (`generate(markets=...)`, off by default). Each query is logged in one of the markets,
drawn uniformly, and shoppers of a market differ in taste after the click: every market m
has its own affinity a_m(brand) ~ Normal(0, 0.8) for each brand and its own price slope b_m
(evenly spaced from -1 to +1 over the markets, in the order given), and both add

    taste_m = a_m(brand) + b_m log(price / type median price)

to the add-to-cart and purchase logits above. Clicks do not depend on the market, so a model
that knows the market can rank add-to-cart and purchase better, and click no better. The
market draws come from a generator of their own, so that a log without markets is the one
the same seed gave before markets existed.

Favorites (`generate(favorites=True)`, off by default): a four-stage funnel click -> favorite
-> add-to-cart -> purchase (ingest it with `demo_schema(favorites=True)`, whose tasks are
`FAVORITE_FUNNEL`). A clicked product is saved as a favorite, and only favorites are added to
the cart:

    favorites   ~ Binomial(clicks, sigmoid(-1.5 + 0.6 rel + 0.5 (rating - 4) - 0.3 discount))
    add_to_cart ~ Binomial(favorites, the add-to-cart probability above)

so saving follows relevance and rating more than price. The favorite draws come from a
generator of their own, so that a log without favorites is the one the same seed gave before
favorites existed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import numpy as np
import pandas as pd

from components.ingest import demo_vocab as vocab
from components.ingest.text_features import lexical_score, tokens  # noqa: F401 (re-exported)
from contract import schema as S

FEATURE_COLUMNS = S.DEMO_SCHEMA.feature_names
COLUMNS = (
    S.TEXT_COLUMNS + FEATURE_COLUMNS + S.DEMO_SCHEMA.funnel + (S.POSITION,)
)  # the order of the written columns
FAVORITES = "favorites"
FAVORITE_FUNNEL = (
    S.Task("click", S.CLICKS),
    S.Task("favorite", FAVORITES),
    S.Task("atc", S.ADD_TO_CART),
    S.Task("purchase", S.PURCHASES),
)
RELEVANCE = "relevance"  # the hidden graded relevance, only added with include_relevance=True

_ATTRACTION = np.array([0.03, 0.10, 0.30, 0.55])


def _catalog(num_products: int, rng: np.random.Generator) -> pd.DataFrame:
    types = vocab.PRODUCT_TYPES
    colors = list(vocab.COLORS)
    type_idx = rng.integers(len(types), size=num_products)
    brand_idx = rng.integers(len(vocab.BRANDS), size=num_products)
    color_idx = rng.integers(len(colors), size=num_products)
    brand_premium = rng.lognormal(0.0, 0.25, size=len(vocab.BRANDS))
    quality = rng.normal(size=num_products)
    fame = rng.normal(size=num_products)
    rows = []
    for i in range(num_products):
        ptype = types[type_idx[i]]
        gender = ""
        if ptype.genders and rng.random() > 0.1:
            gender = ptype.genders[rng.integers(len(ptype.genders))]
        n_attrs = rng.choice(3, p=[0.3, 0.5, 0.2])
        attr_mask = 0
        for a in rng.choice(len(ptype.attributes), size=n_attrs, replace=False):
            attr_mask |= 1 << int(a)
        attrs = [ptype.attributes[a] for a in range(len(ptype.attributes)) if attr_mask >> a & 1]
        brand = vocab.BRANDS[brand_idx[i]]
        color = colors[color_idx[i]]
        words = [brand, vocab.GENDER_TITLE[gender], *attrs, ptype.noun]
        title = " ".join(w for w in words if w) + f", {color}"
        description = f"{ptype.noun.capitalize()} by {brand} in {color}."
        if attrs:
            description += f" {', '.join(attrs).capitalize()}."
        if rng.random() < 0.5:
            description += f" A great {ptype.query_words[rng.integers(len(ptype.query_words))]}."
        price = ptype.median_price * brand_premium[brand_idx[i]] * rng.lognormal(0.0, 0.35)
        reviews = int(rng.lognormal(2.5 + 0.9 * fame[i] + 0.3 * quality[i], 1.0))
        if rng.random() < 0.05:
            reviews = 0
        rating = float(np.clip(4.0 + 0.45 * quality[i] + rng.normal(0, 0.3), 1.0, 5.0))
        rows.append(
            {
                S.PRODUCT_ID: f"P{i:06d}",
                S.TITLE: title,
                S.PRODUCT_TYPE: ptype.noun,
                S.BRAND: brand,
                S.COLOR: color,
                S.GENDER: gender,
                S.DESCRIPTION: description,
                "price": round(price, 2),
                "rating": round(rating, 1) if reviews else 0.0,
                "review_count": reviews,
                "popularity": int(rng.lognormal(3.5 + fame[i] + 0.3 * quality[i], 1.2)),
                "discount": 0.0 if rng.random() < 0.65 else round(rng.uniform(0.05, 0.5), 2),
                "_type": int(type_idx[i]),
                "_group": ptype.group,
                "_attrs": attr_mask,
            }
        )
    return pd.DataFrame(rows)


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[rng.integers(len(options))]


def _intent(rng: np.random.Generator) -> tuple[str, dict]:
    """A random query string and what it asks for."""
    t = int(rng.integers(len(vocab.PRODUCT_TYPES)))
    ptype = vocab.PRODUCT_TYPES[t]
    want: dict = {"type": t, "color": None, "brand": None, "gender": None, "attr": None}
    type_words = _pick(ptype.query_words, rng) if rng.random() < 0.6 else ptype.noun
    prefix, suffix = [], []
    if rng.random() < 0.15:
        want["brand"] = _pick(vocab.BRANDS, rng)
        prefix.append(want["brand"].lower())
    askable = [g for g in ptype.genders if g in vocab.GENDER_QUERY_PREFIX]
    if askable and rng.random() < 0.35:
        want["gender"] = askable[rng.integers(len(askable))]
        if rng.random() < 0.7:
            prefix.append(_pick(vocab.GENDER_QUERY_PREFIX[want["gender"]], rng))
        else:
            suffix.append(_pick(vocab.GENDER_QUERY_SUFFIX[want["gender"]], rng))
    if rng.random() < 0.3:
        want["color"] = _pick(tuple(vocab.COLORS), rng)
        prefix.append(_pick(vocab.COLORS[want["color"]], rng))
    if rng.random() < 0.2:
        want["attr"] = int(rng.integers(len(ptype.attributes)))
        prefix.append(ptype.attributes[want["attr"]])
    if rng.random() < 0.1:
        prefix.insert(0, _pick(vocab.QUERY_FILLERS, rng))
    return " ".join([*prefix, type_words, *suffix]), want


def _relevance(catalog: pd.DataFrame, want: dict) -> np.ndarray:
    ptype = vocab.PRODUCT_TYPES[want["type"]]
    same_type = catalog["_type"].to_numpy() == want["type"]
    misses = np.zeros(len(catalog), dtype=int)
    if want["color"] is not None:
        misses += catalog[S.COLOR].to_numpy() != want["color"]
    if want["brand"] is not None:
        misses += catalog[S.BRAND].to_numpy() != want["brand"]
    if want["gender"] is not None:
        gender = catalog[S.GENDER].to_numpy()
        fits = (gender == want["gender"]) | (gender == "")
        if want["gender"] != vocab.KIDS:
            fits |= gender == vocab.UNISEX
        misses += ~fits
    if want["attr"] is not None:
        misses += (catalog["_attrs"].to_numpy() >> want["attr"] & 1) == 0
    related = catalog["_group"].to_numpy() == ptype.group
    return np.where(same_type, np.maximum(3 - misses, 1), np.where(related, 1, 0))


def _candidates(relevance: np.ndarray, exclude: set[int], rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(10, 31))
    free = np.ones(len(relevance), dtype=bool)
    free[list(exclude)] = False
    chosen: list[np.ndarray] = []
    for pool_mask, share in (
        (relevance >= 2, rng.uniform(0.3, 0.5)),
        (relevance == 1, rng.uniform(0.2, 0.4)),
        (relevance == 0, 1.0),
    ):
        pool = np.flatnonzero(pool_mask & free)
        n = min(len(pool), round(k * share), k - sum(len(c) for c in chosen))
        if n > 0:
            weights = np.where(relevance[pool] == 3, 3.0, 1.0)
            chosen.append(rng.choice(pool, size=n, replace=False, p=weights / weights.sum()))
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=int)


def _engagement(
    cands: pd.DataFrame,
    rel: np.ndarray,
    lexical: np.ndarray,
    rng: np.random.Generator,
    taste: np.ndarray | float = 0.0,
    favorite_rng: np.random.Generator | None = None,
) -> dict:
    n = len(cands)
    log_pop = np.log1p(cands["popularity"].to_numpy())
    ranker = 0.9 * rel + 1.5 * lexical + 0.25 * (log_pop - 3.5) + rng.normal(0, 0.8, size=n)
    rank = np.empty(n, dtype=int)
    rank[np.argsort(-ranker, kind="stable")] = np.arange(1, n + 1)
    sessions = int(rng.lognormal(np.log(80), 1.0)) + 5
    share = rng.uniform(0.3, 1.0, size=n)
    impressions = rng.binomial(sessions, share / (1 + 0.12 * (rank - 1)))
    rating = cands["rating"].to_numpy()
    rated = np.where(rating > 0, rating - 4.0, 0.0)
    discount = cands["discount"].to_numpy()
    median = np.array([vocab.PRODUCT_TYPES[t].median_price for t in cands["_type"]])
    log_price = np.log(cands["price"].to_numpy() / median)
    attract = _ATTRACTION[rel] * np.exp(0.15 * rated) * (1 + 0.3 * discount)
    p_click = np.clip(rank**-0.6 * attract, 0.0, 0.95)
    p_atc = _sigmoid(-2.6 + 0.75 * rel + 0.35 * rated + 1.5 * discount - 0.6 * log_price + taste)
    p_buy = _sigmoid(-1.2 + 0.5 * rel + 0.3 * rated + 1.0 * discount - 0.8 * log_price + taste)
    clicks = rng.binomial(impressions, p_click)
    saved = {}
    if favorite_rng is not None:
        p_favorite = _sigmoid(-1.5 + 0.6 * rel + 0.5 * rated - 0.3 * discount)
        saved[FAVORITES] = favorite_rng.binomial(clicks, p_favorite)
    add_to_cart = rng.binomial(saved.get(FAVORITES, clicks), p_atc)
    purchases = rng.binomial(add_to_cart, p_buy)
    jitter = rng.normal(0, 0.3 * np.sqrt(rank))
    return {
        S.IMPRESSIONS: impressions,
        S.CLICKS: clicks,
        **saved,
        S.ADD_TO_CART: add_to_cart,
        S.PURCHASES: purchases,
        S.POSITION: np.round(np.maximum(rank + jitter, 1.0), 1),
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _market_tastes(markets, brands, rng: np.random.Generator) -> dict:
    """Each market's (brand affinity {brand: a}, price slope b) of the module docstring."""
    slopes = np.linspace(-1.0, 1.0, len(markets)) if len(markets) > 1 else np.zeros(len(markets))
    return {
        market: (dict(zip(brands, rng.normal(0.0, 0.8, len(brands)), strict=True)), slope)
        for market, slope in zip(markets, slopes, strict=True)
    }


def _taste(cands: pd.DataFrame, affinity: dict, slope: float) -> np.ndarray:
    median = np.array([vocab.PRODUCT_TYPES[t].median_price for t in cands["_type"]])
    log_price = np.log(cands["price"].to_numpy() / median)
    return np.array([affinity[b] for b in cands[S.BRAND]]) + slope * log_price


def demo_schema(markets=(), favorites: bool = False) -> S.RawSchema:
    """The demo shop's schema, declaring `markets` when there are any, and the four-stage
    funnel with a favorite stage with `favorites`."""
    tasks = FAVORITE_FUNNEL if favorites else S.DEMO_SCHEMA.tasks
    return dataclasses.replace(S.DEMO_SCHEMA, markets=tuple(markets), tasks=tasks)


def generate(
    num_queries: int = 600,
    seed: int = 0,
    include_relevance: bool = False,
    markets: tuple[str, ...] = (),
    favorites: bool = False,
) -> pd.DataFrame:
    """The demo engagement log for `num_queries` queries; the same seed gives the same frame.

    With `include_relevance` a `relevance` column (the hidden grade 0-3) is added, for analysis.
    With `markets`, a `market` column: each query's market, whose shoppers' tastes differ
    (module docstring); ingest it with `demo_schema(markets)`. With `favorites`, a `favorites`
    count between clicks and add_to_cart; ingest it with `demo_schema(favorites=True)`.
    """
    if num_queries < 1:
        raise ValueError(f"num_queries must be at least 1, got {num_queries}")
    rng = np.random.default_rng(seed)
    catalog = _catalog(max(300, 3 * num_queries), rng)
    market_rng = np.random.default_rng([seed, 1])
    favorite_rng = np.random.default_rng([seed, 2]) if favorites else None
    tastes = _market_tastes(markets, sorted(set(catalog[S.BRAND])), market_rng)
    used: dict[str, set[int]] = {}
    frames = []
    for _ in range(num_queries):
        for _attempt in range(20):
            query, want = _intent(rng)
            if query not in used:
                break
        relevance = _relevance(catalog, want)
        idx = _candidates(relevance, used.setdefault(query, set()), rng)
        used[query].update(int(i) for i in idx)
        cands = catalog.iloc[idx].reset_index(drop=True)
        rel = relevance[idx]
        lexical = np.array([lexical_score(query, title) for title in cands[S.TITLE]])
        market, taste = None, 0.0
        if markets:
            market = markets[int(market_rng.integers(len(markets)))]
            taste = _taste(cands, *tastes[market])
        frame = cands.assign(
            **{S.QUERY: query, "lexical_score": lexical},
            **_engagement(cands, rel, lexical, rng, taste, favorite_rng),
        )
        if market is not None:
            frame[S.MARKET] = market
        if include_relevance:
            frame[RELEVANCE] = rel
        frames.append(frame)
    log = pd.concat(frames, ignore_index=True)
    columns = list(COLUMNS) + ([S.MARKET] if markets else [])
    if favorites:
        columns.insert(columns.index(S.ADD_TO_CART), FAVORITES)
    return log[columns + ([RELEVANCE] if include_relevance else [])]


def write(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the log as CSV, JSONL or Parquet, chosen by the file extension."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".parquet"):
        raise ValueError(f"cannot tell the format of {path}: use a .csv, .jsonl or .parquet name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        df.to_parquet(path, index=False)
    return path


@click.command()
@click.option("--queries", default=600, show_default=True, help="Number of distinct queries.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Output .csv, .jsonl or .parquet file.",
)
@click.option(
    "--relevance/--no-relevance", default=False, help="Also write the hidden relevance grade."
)
@click.option(
    "--markets",
    default="",
    help="Comma-separated markets (e.g. us,de,jp): a market column, tastes differing by market.",
)
@click.option(
    "--favorites/--no-favorites",
    default=False,
    help="A favorites count: the four-stage funnel click -> favorite -> atc -> purchase.",
)
@click.option(
    "--schema-out",
    default="",
    type=click.Path(dir_okay=False),
    help="Also write the log's schema file (ranking features, markets, tasks) here.",
)
def main(
    queries: int, seed: int, out: str, relevance: bool, markets: str, favorites: bool,
    schema_out: str,
) -> None:  # fmt: skip
    """Write the demo engagement log."""
    names = tuple(m.strip() for m in markets.split(",") if m.strip())
    df = generate(queries, seed, include_relevance=relevance, markets=names, favorites=favorites)
    path = write(df, out)
    click.echo(f"wrote {len(df)} rows for {df[S.QUERY].nunique()} queries to {path}")
    if schema_out:
        Path(schema_out).write_text(demo_schema(names, favorites).to_json(), encoding="utf-8")
        click.echo(f"wrote its schema to {schema_out}")


if __name__ == "__main__":
    main()
