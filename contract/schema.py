"""The data contract between pipeline steps: column names, tasks and the raw schema.

Every step imports its names from here, so a renamed column is changed in one place.
Raw log rows (CSV, JSONL, Parquet) carry the columns below; ingest writes them as
`tf.Example` features under the same names, plus the three task labels.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

# Identity and text columns of a raw row.
QUERY = "query"
PRODUCT_ID = "product_id"
TITLE = "title"
PRODUCT_TYPE = "product_type"
BRAND = "brand"
COLOR = "color"
GENDER = "gender"
DESCRIPTION = "description"

REQUIRED_TEXT_COLUMNS = (QUERY, PRODUCT_ID, TITLE)
# Present in the contract but may be empty (or, for DESCRIPTION, absent from the file).
OPTIONAL_TEXT_COLUMNS = (PRODUCT_TYPE, BRAND, COLOR, GENDER, DESCRIPTION)
TEXT_COLUMNS = REQUIRED_TEXT_COLUMNS + OPTIONAL_TEXT_COLUMNS
# Categorical product fields: the transform builds a vocabulary for each.
CATEGORICAL_COLUMNS = (PRODUCT_TYPE, BRAND, COLOR, GENDER)

# Engagement counts, in funnel order: impressions >= clicks >= add_to_cart >= purchases.
IMPRESSIONS = "impressions"
CLICKS = "clicks"
ADD_TO_CART = "add_to_cart"
PURCHASES = "purchases"
FUNNEL = (IMPRESSIONS, CLICKS, ADD_TO_CART, PURCHASES)
POSITION = "position"  # optional mean display position (1 = top)
# The market (region, country, storefront) a row was logged in: a column of logs whose schema
# declares its markets (RawSchema.markets), validated by ingest against that list.
MARKET = "market"

# Tasks in funnel order, and the count that defines each task's binary label (count > 0).
TASKS = ("click", "atc", "purchase")
TASK_COUNT_COLUMN = {"click": CLICKS, "atc": ADD_TO_CART, "purchase": PURCHASES}
LABEL_KEYS = TASKS


def rate_name(task: str) -> str:
    """The transformed column holding a task's count per impression (a training target)."""
    return f"{task}_rate"


# Names a ranking feature may not take: the text, the counts, the position and the targets.
RESERVED_COLUMNS = frozenset(
    {*TEXT_COLUMNS, *FUNNEL, POSITION, MARKET, *TASKS, *(rate_name(t) for t in TASKS)}
)


# Pairs with this many impressions or fewer are filtered out by ingest.
MIN_IMPRESSIONS_EXCLUSIVE = 5

# Split names and their share of queries (split by a stable hash of the normalised query).
SPLITS = ("train", "eval", "test")
SPLIT_PERCENT = {"train": 80, "eval": 10, "test": 10}

# Names used after the transform (model inputs).
PRODUCT_TEXT = "product_text"  # title + categorical fields, built in the transform graph
WIDE = "wide"  # z-scored ranking features, stacked into one dense vector


def zscore_name(feature: str) -> str:
    return f"{feature}_z"


def vocab_id_name(column: str) -> str:
    return f"{column}_id"


def vocab_name(column: str) -> str:
    return f"{column}_vocab"


# The model's market input: the market's vocabulary id (0 for every row of a log without
# markets, whose vocabulary is that one bucket).
MARKET_ID = vocab_id_name(MARKET)


@dataclasses.dataclass(frozen=True)
class RankingFeature:
    """A numeric ranking feature of the raw log.

    Args:
        name: column name.
        log1p: apply log1p before z-scoring (counts and other heavy-tailed values).
        min_value: smallest valid value (rows below it are dead-lettered), or None.
        max_value: largest valid value, or None.
        required: a missing or empty value dead-letters the row; otherwise it is
            imputed by the transform with the training mean (z = 0).
    """

    name: str
    log1p: bool = False
    min_value: float | None = None
    max_value: float | None = None
    required: bool = True

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"ranking feature name must be an identifier, got {self.name!r}")
        if self.name in RESERVED_COLUMNS:
            raise ValueError(f"ranking feature {self.name!r} clashes with a reserved column")
        if self.log1p and self.min_value is not None and self.min_value <= -1:
            raise ValueError(f"ranking feature {self.name!r} uses log1p but allows values <= -1")


@dataclasses.dataclass(frozen=True)
class RawSchema:
    """The declared schema of a raw engagement log: which numeric columns are ranking
    features, and (optionally) which column of the user's export holds each log column.

    Args:
        ranking_features: the numeric ranking features.
        columns: (log column, source column) pairs, for exports whose column names differ,
            e.g. (("query", "search_term"), ("product_id", "sku")); in a schema file, the
            object "columns": {"query": "search_term", ...}. Unmapped columns keep their name.
        markets: the markets the log may name in its `market` column (e.g. ("de", "fr",
            "us")), for one model across markets (the ranker's region mask); declaring them
            makes `market` a required column whose values (compared in lower case) must be
            one of them. Empty: the log has no markets.
    """

    ranking_features: tuple[RankingFeature, ...]
    columns: tuple[tuple[str, str], ...] = ()
    markets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.ranking_features:
            raise ValueError("a raw schema needs at least one ranking feature")
        names = [f.name for f in self.ranking_features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"ranking features declared twice: {dupes}")
        markets = tuple(m.strip().lower() if isinstance(m, str) else m for m in self.markets)
        if any(not isinstance(m, str) or not m for m in markets):
            raise ValueError(f"schema markets must be non-empty names, got {list(self.markets)}")
        if len(set(markets)) != len(markets):
            raise ValueError(f"schema markets must differ in lower case, got {list(self.markets)}")
        object.__setattr__(self, "markets", markets)
        known = set(TEXT_COLUMNS) | set(FUNNEL) | {POSITION} | set(names)
        known |= {MARKET} if markets else set()
        for target, source in self.columns:
            if target not in known:
                raise ValueError(
                    f"schema columns maps {source!r} to {target!r}, which is not a column of the "
                    f"raw log (one of {sorted(known)})"
                )
            if not isinstance(source, str) or not source:
                raise ValueError(f"schema columns: the source of {target!r} must be a column name")
        sources = [source for _, source in self.columns]
        twice = sorted({s for s in sources if sources.count(s) > 1})
        targets = [target for target, _ in self.columns]
        if twice or len(set(targets)) != len(targets):
            raise ValueError(f"schema columns must map each column once, got {dict(self.columns)}")

    def rename(self, values: dict) -> dict:
        """A row of the export with its columns renamed to the log's (see `columns`)."""
        if not self.columns:
            return values
        to_log = {source: target for target, source in self.columns}
        return {to_log.get(k, k): v for k, v in values.items() if k not in self._shadowed}

    @property
    def _shadowed(self) -> frozenset[str]:
        """Export columns named like a mapped log column but not its source: ignored, so an
        unrelated 'query' column cannot overwrite the mapped one."""
        sources = {source for _, source in self.columns}
        return frozenset(t for t, _ in self.columns if t not in sources)

    def source_name(self, column: str) -> str:
        """The export's name for a log column."""
        return dict(self.columns).get(column, column)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.ranking_features)

    def required_columns(self) -> tuple[str, ...]:
        """Columns a CSV header or Parquet schema must contain."""
        required = [f.name for f in self.ranking_features if f.required]
        market = (MARKET,) if self.markets else ()
        return REQUIRED_TEXT_COLUMNS + market + FUNNEL + tuple(required)

    def to_json(self) -> str:
        data: dict = {"ranking_features": [dataclasses.asdict(f) for f in self.ranking_features]}
        if self.columns:
            data["columns"] = dict(self.columns)
        if self.markets:
            data["markets"] = list(self.markets)
        return json.dumps(data, indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> RawSchema:
        if not isinstance(data, dict) or "ranking_features" not in data:
            raise ValueError("a schema file must be a JSON object with a 'ranking_features' list")
        features = []
        for i, entry in enumerate(data["ranking_features"]):
            if not isinstance(entry, dict) or "name" not in entry:
                raise ValueError(f"schema ranking_features[{i}] must be an object with a 'name'")
            unknown = set(entry) - {f.name for f in dataclasses.fields(RankingFeature)}
            if unknown:
                raise ValueError(f"schema ranking_features[{i}] has unknown keys {sorted(unknown)}")
            features.append(RankingFeature(**entry))
        unknown = set(data) - {"ranking_features", "columns", "markets"}
        if unknown:
            raise ValueError(f"a schema file has unknown keys {sorted(unknown)}")
        columns = data.get("columns", {})
        if not isinstance(columns, dict):
            raise ValueError("schema 'columns' must be an object: log column -> export column")
        markets = data.get("markets", [])
        if not isinstance(markets, list):
            raise ValueError('schema "markets" must be a list of market names')
        return cls(
            ranking_features=tuple(features),
            columns=tuple(sorted(columns.items())),
            markets=tuple(markets),
        )

    @classmethod
    def load(cls, path: str | Path) -> RawSchema:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"schema file {path} is not valid JSON: {err}") from err
        return cls.from_dict(data)


# The ranking features of the embedded demo shop (components/ingest/demo_data.py).
DEMO_SCHEMA = RawSchema(
    ranking_features=(
        RankingFeature("lexical_score", min_value=0.0, max_value=1.0),
        RankingFeature("price", log1p=True, min_value=0.0),
        RankingFeature("rating", min_value=0.0, max_value=5.0),
        RankingFeature("review_count", log1p=True, min_value=0.0),
        RankingFeature("popularity", log1p=True, min_value=0.0),
        RankingFeature("discount", min_value=0.0, max_value=1.0),
    )
)


def resolve_schema(schema_uri: str) -> RawSchema:
    """The schema at `schema_uri`, or the demo schema when it is empty."""
    return RawSchema.load(schema_uri) if schema_uri else DEMO_SCHEMA


def label_of(task: str, counts: dict[str, int]) -> int:
    return int(counts[TASK_COUNT_COLUMN[task]] > 0)


def required_fields_message(missing: Sequence[str], where: str) -> str:
    return f"{where} is missing required column(s): {', '.join(missing)}"
