"""Score a split with an exported model and compute every task's ranking metrics.

The split is read from ingest's Parquet files (`components.raw_splits`) a batch at a time;
the model is called through its `score_examples` signature on the batch's rows serialized as
raw tf.Examples (`raw_splits.to_examples`), exactly as serving will see them; the query,
product, impressions and labels are taken from the same batch, so predictions and labels
cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from components.evaluate.metrics import auc, ndcg_at_ks
from contract import schema as S
from serving.repository import (
    SAVED_MODEL_PB,
    champion_version,
    check_model_name,
    is_saved_model,
    require_local,
)
from serving.signatures import SCORE_EXAMPLES

SIGNATURE = SCORE_EXAMPLES  # the serving model's signature over serialized raw tf.Examples
SIGNATURE_INPUT = "examples"
SCORE_OUTPUT = "score"
DEFAULT_KS = (1, 5, 10)


def _read_columns(tasks: Sequence[str], counts: Sequence[str] = ()) -> list[str]:
    """The columns read beside the model's outputs: identity, impressions, one label per
    task (ingest writes each task's 0/1 label under the task's name) and the `counts`
    columns. (The market too, when the split has one.)"""
    return list(dict.fromkeys([*counts, S.QUERY, S.PRODUCT_ID, S.IMPRESSIONS, *tasks]))


@dataclasses.dataclass(frozen=True, eq=False)
class ScoredSplit:
    """A split with the model's outputs beside its labels, one row per example.

    Args:
        query: query text, shape [n] (str).
        product_id: product id, shape [n] (str).
        impressions: impressions of the (query, product) pair, shape [n].
        labels: 0/1 label per task, in funnel order, each shape [n]; its keys are the tasks.
        predictions: the model's probability per task (the same tasks), each shape [n].
        score: the model's ranking score, shape [n].
        market: the market of each example, shape [n] (str; "" for a log without markets);
            None: none of them has one.
        counts: each task's engagement count (its schema count column), shape [n] each;
            None: not read.
    """

    query: np.ndarray
    product_id: np.ndarray
    impressions: np.ndarray
    labels: Mapping[str, np.ndarray]
    predictions: Mapping[str, np.ndarray]
    score: np.ndarray
    market: np.ndarray | None = None
    counts: Mapping[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        n = self.query.shape[0]
        if not self.labels or set(self.labels) != set(self.predictions):
            raise ValueError(
                "a scored split needs labels and predictions for the same tasks (at least one), "
                f"got labels {list(self.labels)} and predictions {list(self.predictions)}"
            )
        columns = {
            "product_id": self.product_id,
            "impressions": self.impressions,
            "score": self.score,
            **({"market": self.market} if self.market is not None else {}),
            **{f"labels[{t}]": v for t, v in self.labels.items()},
            **{f"predictions[{t}]": v for t, v in self.predictions.items()},
            **{f"counts[{t}]": v for t, v in (self.counts or {}).items()},
        }
        wrong = {name: v.shape for name, v in columns.items() if v.shape != (n,)}
        if wrong:
            raise ValueError(f"every column must have shape ({n},) like query, got {wrong}")

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks scored, in funnel order (the keys of `labels`)."""
        return tuple(self.labels)

    @property
    def num_examples(self) -> int:
        return int(self.query.shape[0])


def _load_scorer(saved_model_dir: str):
    path = Path(saved_model_dir)
    if not is_saved_model(path):
        raise FileNotFoundError(f"no SavedModel at {saved_model_dir}: {SAVED_MODEL_PB} is missing")
    # The serving graph tokenizes with TF Text ops (built into TF Serving); register them.
    import tensorflow_text  # noqa: F401

    loaded = tf.saved_model.load(str(path))
    if SIGNATURE not in loaded.signatures:
        raise ValueError(
            f"the SavedModel at {saved_model_dir} has no {SIGNATURE!r} signature, "
            f"only {sorted(loaded.signatures)}"
        )
    return loaded, loaded.signatures[SIGNATURE]


def _check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    tasks = tuple(tasks)
    if not tasks or len(set(tasks)) != len(tasks) or SCORE_OUTPUT in tasks:
        raise ValueError(
            f"score_split needs one or more distinct task names other than {SCORE_OUTPUT!r}, "
            f"got {list(tasks)}"
        )
    return tasks


class MissingOutputs(ValueError):
    """The model has no output for some task of the schema (`missing`): a model of another
    funnel."""

    def __init__(self, message: str, missing: Sequence[str]) -> None:
        super().__init__(message)
        self.missing = list(missing)


def _check_signature(scorer, tasks: Sequence[str], where: str) -> None:
    """A clear error when the model has no output for some task of the schema."""
    outputs = scorer.structured_outputs
    missing = [name for name in (*tasks, SCORE_OUTPUT) if name not in outputs]
    if missing:
        raise MissingOutputs(
            f"the model at {where} has no output for {missing}: its {SIGNATURE} outputs are "
            f"{sorted(outputs)}, the schema's tasks {list(tasks)} (plus {SCORE_OUTPUT!r})",
            missing,
        )


def _check_outputs(
    outputs: Mapping[str, tf.Tensor], tasks: Sequence[str], batch_size: int, where: str
) -> None:
    expected = (*tasks, SCORE_OUTPUT)
    missing = [name for name in expected if name not in outputs]
    if missing:
        raise ValueError(
            f"{SIGNATURE} of {where} is missing output(s) {missing}; it returned {sorted(outputs)}"
        )
    for name in expected:
        if tuple(outputs[name].shape) != (batch_size,):
            raise ValueError(
                f"{SIGNATURE} output {name!r} of {where} must have shape ({batch_size},) for a "
                f"batch of {batch_size}, got {tuple(outputs[name].shape)}"
            )


def score_split(
    saved_model_dir: str,
    file_pattern: str,
    tasks: Sequence[str],
    batch_size: int = 1024,
    counts: Mapping[str, str] | None = None,
) -> ScoredSplit:
    """Run the model's `score_examples` signature over every record matching `file_pattern`.

    Args:
        saved_model_dir: directory holding saved_model.pb.
        file_pattern: glob of a raw split's Parquet files, as ingest writes them (with the
            labels): `layout.raw_split_pattern`.
        tasks: the tasks to evaluate, in funnel order (the schema's `task_names`): each is a
            label feature of the records and an output of the model.
        batch_size: examples per signature call.
        counts: {task: its count column} (the schema's `Task.count`) to read as
            ScoredSplit.counts; None: none.
    """
    tasks = _check_tasks(tasks)
    counts = dict(counts or {})
    if set(counts) - set(tasks):
        raise ValueError(f"counts names tasks {sorted(set(counts) - set(tasks))} not scored")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    from components import raw_splits

    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise FileNotFoundError(f"no Parquet files of a raw split match {file_pattern}")
    # Keep a reference to the loaded object: its variables back the signature.
    _loaded, scorer = _load_scorer(saved_model_dir)
    _check_signature(scorer, tasks, saved_model_dir)
    wanted = _read_columns(tasks, sorted(set(counts.values())))

    parts: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    parts[S.MARKET] = []
    parts.update({f"out:{name}": [] for name in (*tasks, SCORE_OUTPUT)})
    for batch in raw_splits.read_batches(files, batch_size=batch_size):
        n = batch.num_rows
        missing = [name for name in wanted if name not in batch.schema.names]
        if missing:
            raise ValueError(
                f"the split under {file_pattern} does not carry the evaluation features "
                f"{sorted(wanted)}: {missing} missing"
            )
        if not n:
            continue
        outputs = scorer(**{SIGNATURE_INPUT: tf.constant(raw_splits.to_examples(batch))})
        _check_outputs(outputs, tasks, n, saved_model_dir)
        for name in wanted:
            parts[name].append(batch.column(name).to_numpy(zero_copy_only=False))
        # Only logs with markets have one: "" for the others.
        market = batch.column(S.MARKET) if S.MARKET in batch.schema.names else None
        parts[S.MARKET].append(
            np.full(n, "", object) if market is None else market.to_numpy(zero_copy_only=False)
        )
        # Labels and outputs share the task names: outputs are kept under "out:<name>".
        for name in (*tasks, SCORE_OUTPUT):
            parts[f"out:{name}"].append(outputs[name].numpy())

    # An empty split is scored as empty: every metric is then undefined (NaN), so the gate
    # refuses the model and says why, instead of the run failing here.
    text_columns = (S.QUERY, S.PRODUCT_ID, S.MARKET)
    empty = {name: np.zeros([0], object if name in text_columns else np.int64) for name in parts}
    columns = {
        key: np.concatenate(values) if values else empty[key] for key, values in parts.items()
    }
    for key in (f"out:{name}" for name in (*tasks, SCORE_OUTPUT)):
        columns[key] = columns[key].astype(np.float64)

    def text(column: str) -> np.ndarray:
        return np.asarray(columns[column], dtype=object)

    return ScoredSplit(
        query=text(S.QUERY),
        product_id=text(S.PRODUCT_ID),
        impressions=columns[S.IMPRESSIONS],
        labels={task: columns[task] for task in tasks},
        predictions={task: columns[f"out:{task}"] for task in tasks},
        score=columns[f"out:{SCORE_OUTPUT}"],
        market=text(S.MARKET),
        counts={task: columns[column] for task, column in counts.items()} if counts else None,
    )


def metric_key(task: str, metric: str) -> str:
    """Name of one task's metric, e.g. metric_key("click", "ndcg@5") == "click/ndcg@5"."""
    return f"{task}/{metric}"


def ndcg_name(k: int) -> str:
    return f"ndcg@{k}"


def _queries_without_positive(query: np.ndarray, labels: np.ndarray) -> int:
    _, inverse = np.unique(query, return_inverse=True)
    positives = np.bincount(inverse, weights=(labels > 0).astype(np.float64))
    return int(np.count_nonzero(positives == 0))


def compute_metrics(
    scored: ScoredSplit, ks: Sequence[int] = DEFAULT_KS, relevance: np.ndarray | None = None
) -> dict[str, float | int]:
    """AUC and NDCG@k of every task's prediction against that task's label, plus counts.

    Keys: "examples", "queries", and per task t of the split: "t/auc", "t/ndcg@k" for each
    k, "t/positives", "t/queries_without_positive" and "t/nonfinite_predictions". When a task's
    predictions contain NaN or infinite values its AUC and NDCG are NaN, so the gate refuses
    the model and the count says why. Undefined metrics (a single class, no query with a
    positive) are NaN as well. With `relevance` (a graded label per example, e.g.
    relevance_label.engagement_labels), also "relevance/ndcg@k": the model's score ranked
    against it.
    """
    if not ks:
        raise ValueError("compute_metrics needs at least one NDCG cut-off in ks")
    result: dict[str, float | int] = {
        "examples": scored.num_examples,
        "queries": int(np.unique(scored.query).size),
    }
    for task in scored.tasks:
        labels = scored.labels[task]
        predictions = scored.predictions[task]
        nonfinite = int(np.count_nonzero(~np.isfinite(predictions)))
        result[metric_key(task, "positives")] = int(np.count_nonzero(labels))
        result[metric_key(task, "nonfinite_predictions")] = nonfinite
        if nonfinite:
            result[metric_key(task, "auc")] = float("nan")
            for k in ks:
                result[metric_key(task, ndcg_name(k))] = float("nan")
            result[metric_key(task, "queries_without_positive")] = _queries_without_positive(
                scored.query, labels
            )
            continue
        result[metric_key(task, "auc")] = auc(labels, predictions)
        ndcg = ndcg_at_ks(scored.query, labels, predictions, ks)
        for k in ks:
            result[metric_key(task, ndcg_name(k))] = ndcg[k].mean
        result[metric_key(task, "queries_without_positive")] = ndcg[ks[0]].queries_without_positive
    if relevance is not None:
        finite = bool(np.all(np.isfinite(scored.score)))
        graded = ndcg_at_ks(scored.query, relevance, scored.score, ks) if finite else None
        for k in ks:
            value = graded[k].mean if graded is not None else float("nan")
            result[metric_key("relevance", ndcg_name(k))] = value
    return result


def find_champion(model_base: str, model_name: str) -> str | None:
    """Path of the model in production: the highest numeric version holding saved_model.pb.

    Returns None when `<model_base>/<model_name>` has no such version (the first push).
    """
    check_model_name(model_name)
    root = require_local(model_base, "model_base") / model_name
    found = champion_version(root)
    return None if found is None else str(found[1])
