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

# Engagement counts of the default funnel, in funnel order: impressions >= clicks >=
# add_to_cart >= purchases. A schema may declare another funnel (RawSchema.tasks).
IMPRESSIONS = "impressions"
CLICKS = "clicks"
ADD_TO_CART = "add_to_cart"
PURCHASES = "purchases"
POSITION = "position"  # optional mean display position (1 = top)
# The market (region, country, storefront) a row was logged in: a column of logs whose schema
# declares its markets (RawSchema.markets), validated by ingest against that list.
MARKET = "market"


def _is_identifier(name) -> bool:
    return isinstance(name, str) and bool(name) and name.replace("_", "").isalnum()


@dataclasses.dataclass(frozen=True)
class Task:
    """One stage of the engagement funnel, a binary task the ranker learns (one tower).

    Args:
        name: the task's name: its label, tower, output and metric prefix, e.g. "click".
        count: the log's count column of the stage, e.g. "clicks"; each stage's count is at
            most the previous stage's (impressions first).
        min_count: the label rule: a pair is a positive of the task when its count is at least
            this (1: any).
    """

    name: str
    count: str
    min_count: int = 1

    def __post_init__(self) -> None:
        if not _is_identifier(self.name) or not _is_identifier(self.count):
            raise ValueError(
                f"a task's name and count column must be identifiers, got {self.name!r} and "
                f"{self.count!r}"
            )
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, int):
            raise ValueError(f"task {self.name!r}: min_count must be an integer")
        if self.min_count < 1:
            raise ValueError(f"task {self.name!r}: min_count must be >= 1, got {self.min_count}")

    def label(self, count):
        """1 where `count` (a number or an array) makes the pair a positive of this task."""
        positive = count >= self.min_count
        return positive.astype("int64") if hasattr(positive, "astype") else int(positive)


# The paper's funnel: click -> add-to-cart -> purchase, each labelled by its count > 0.
DEFAULT_FUNNEL = (Task("click", CLICKS), Task("atc", ADD_TO_CART), Task("purchase", PURCHASES))
# The default funnel's task names. Code that handles a log or a model reads the tasks from its
# RawSchema (`task_names`) or RankerConfig (`tasks`) instead.
DEFAULT_TASKS = tuple(t.name for t in DEFAULT_FUNNEL)


# The optional extra training task outside the funnel: the engagement relevance label
# (components/transform/relevance.py), its tower's output and its label column.
RELEVANCE_TASK = "relevance"


def rate_name(task: str) -> str:
    """The transformed column holding a task's count per impression (a training target)."""
    return f"{task}_rate"


# Names no column of a log may take besides its own role: the text, impressions, position,
# market and the transform's outputs.
RESERVED_COLUMNS = frozenset({*TEXT_COLUMNS, IMPRESSIONS, POSITION, MARKET})


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
        relevance_score: the feature is itself a query-product relevance score (a lexical
            match, a search engine's score): the evaluate step ranks the test pairs by it
            alone as a no-training reference the candidate must not fall below. In a schema
            file, `"relevance_score": true`.
    """

    name: str
    log1p: bool = False
    min_value: float | None = None
    max_value: float | None = None
    required: bool = True
    relevance_score: bool = False

    def __post_init__(self) -> None:
        if not _is_identifier(self.name):
            raise ValueError(f"ranking feature name must be an identifier, got {self.name!r}")
        if self.name in RESERVED_COLUMNS:
            raise ValueError(f"ranking feature {self.name!r} clashes with a reserved column")
        if self.log1p and self.min_value is not None and self.min_value <= -1:
            raise ValueError(f"ranking feature {self.name!r} uses log1p but allows values <= -1")
        if not isinstance(self.relevance_score, bool):
            raise ValueError(
                f"ranking feature {self.name!r}: relevance_score must be true or false, "
                f"got {self.relevance_score!r}"
            )

    def to_dict(self) -> dict:
        """The feature as a schema file's ranking_features entry: `relevance_score` only when
        true, so a schema without relevance scores reads and writes as before."""
        data = dataclasses.asdict(self)
        if not self.relevance_score:
            del data["relevance_score"]
        return data


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
        tasks: the funnel after impressions, in order: one task per stage, each with its count
            column and label rule (e.g. click -> favorite -> order -> payment); in a schema
            file, "tasks": [{"name": "click", "count": "clicks"}, ...]. Default: the paper's
            click -> atc -> purchase on clicks, add_to_cart and purchases.
    """

    ranking_features: tuple[RankingFeature, ...]
    columns: tuple[tuple[str, str], ...] = ()
    markets: tuple[str, ...] = ()
    tasks: tuple[Task, ...] = DEFAULT_FUNNEL

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
        self._check_tasks(names)
        known = set(TEXT_COLUMNS) | set(self.funnel) | {POSITION} | set(names)
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

    def _check_tasks(self, feature_names: list[str]) -> None:
        tasks = tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        if not tasks or not all(isinstance(t, Task) for t in tasks):
            raise ValueError("a schema's tasks must be at least one task (name, count column)")
        names = [t.name for t in tasks]
        counts = [t.count for t in tasks]
        for what, values in (("task names", names), ("task count columns", counts)):
            if len(set(values)) != len(values):
                raise ValueError(f"schema {what} must differ, got {values}")
        taken = dict.fromkeys(RESERVED_COLUMNS, "a reserved column")
        taken[RELEVANCE_TASK] = "the engagement relevance task"
        for task in tasks:
            for name in (task.name, rate_name(task.name)):
                if name in taken:
                    raise ValueError(f"task {task.name!r}: {name!r} is {taken[name]}")
            taken[task.name] = f"task {task.name!r}'s label"
            taken[rate_name(task.name)] = f"task {task.name!r}'s rate"
        for task in tasks:
            if task.count in taken:
                raise ValueError(
                    f"task {task.name!r}: count column {task.count!r} is {taken[task.count]}"
                )
            taken[task.count] = f"task {task.name!r}'s count"
        for name in feature_names:
            if name in taken:
                raise ValueError(f"ranking feature {name!r} clashes with {taken[name]}")

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks in funnel order: the ranker's outputs, labels and metric prefixes."""
        return tuple(t.name for t in self.tasks)

    @property
    def funnel(self) -> tuple[str, ...]:
        """The count columns in funnel order, impressions first; each is at most the one before."""
        return (IMPRESSIONS, *(t.count for t in self.tasks))

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

    @property
    def relevance_scores(self) -> tuple[str, ...]:
        """The ranking features marked `relevance_score`: the evaluate step's references."""
        return tuple(f.name for f in self.ranking_features if f.relevance_score)

    def required_columns(self) -> tuple[str, ...]:
        """Columns a CSV header or Parquet schema must contain."""
        required = [f.name for f in self.ranking_features if f.required]
        market = (MARKET,) if self.markets else ()
        return REQUIRED_TEXT_COLUMNS + market + self.funnel + tuple(required)

    def to_json(self) -> str:
        data: dict = {"ranking_features": [f.to_dict() for f in self.ranking_features]}
        if self.columns:
            data["columns"] = dict(self.columns)
        if self.markets:
            data["markets"] = list(self.markets)
        if self.tasks != DEFAULT_FUNNEL:
            data["tasks"] = [dataclasses.asdict(t) for t in self.tasks]
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
        unknown = set(data) - {"ranking_features", "columns", "markets", "tasks"}
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
            tasks=_tasks_from(data.get("tasks")),
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
        RankingFeature("lexical_score", min_value=0.0, max_value=1.0, relevance_score=True),
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


def _tasks_from(entries) -> tuple[Task, ...]:
    """A schema file's "tasks" list (absent: the default funnel)."""
    if entries is None:
        return DEFAULT_FUNNEL
    if not isinstance(entries, list) or not entries:
        raise ValueError('schema "tasks" must be a non-empty list of {"name", "count"} objects')
    fields = {f.name for f in dataclasses.fields(Task)}
    tasks = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"name", "count"} <= set(entry):
            raise ValueError(f"schema tasks[{i}] must be an object with a 'name' and a 'count'")
        unknown = set(entry) - fields
        if unknown:
            raise ValueError(f"schema tasks[{i}] has unknown keys {sorted(unknown)}")
        tasks.append(Task(**entry))
    return tuple(tasks)


def required_fields_message(missing: Sequence[str], where: str) -> str:
    return f"{where} is missing required column(s): {', '.join(missing)}"
