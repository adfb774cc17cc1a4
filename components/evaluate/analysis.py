"""What the evaluation report shows of one model on the test split, beyond the headline metrics.

Per task: the ROC curve (at most ~100 points), a confusion matrix at the threshold that
maximises F1 on the split, NDCG@k for k = 1..10, and calibration (mean predicted probability
against the observed rate in ten equal-count bins of the prediction). Per impression group
(the test pairs' impressions cut at their 25th and 75th percentiles): AUC and NDCG@5 of every
task. Plain numpy in, frozen dataclasses out; `to_dict`/`from_dict` carry them through JSON.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import roc_curve

from components.evaluate.metrics import auc, ndcg_at_k, ndcg_at_ks, ndcg_per_query
from components.evaluate.stats import PairedComparison, paired_comparison

if TYPE_CHECKING:
    from components.evaluate.scoring import ScoredSplit

MAX_ROC_POINTS = 101
NDCG_CURVE_KS = tuple(range(1, 11))
CALIBRATION_BINS = 10
# Impression groups: percentiles of the test pairs' impressions that bound them.
GROUP_PERCENTILES = (25, 75)
GROUP_NAMES = ("0-25%", "25-75%", "75-100%")
GROUP_METRICS = ("auc", "ndcg@5")
THRESHOLD_RULE = "maximises F1 on the test split"
# Rows are the actual class, columns the predicted class (as the Kubeflow UI shows them).
CONFUSION_CATEGORIES = ("negative", "positive")


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclasses.dataclass(frozen=True)
class RocCurve:
    """ROC points from (0, 0) to (1, 1); threshold: predicted positive when score >= it.

    The first point's threshold is above every score (the highest score + 1).
    """

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    thresholds: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Confusion:
    """Counts at one threshold: matrix[actual][predicted], classes (negative, positive)."""

    threshold: float
    rule: str
    matrix: tuple[tuple[int, int], tuple[int, int]]

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.matrix)


@dataclasses.dataclass(frozen=True)
class CalibrationBin:
    """One equal-count bin of the predictions: their mean against the observed positive rate."""

    lowest: float
    highest: float
    mean_predicted: float
    observed_rate: float
    pairs: int


@dataclasses.dataclass(frozen=True)
class TaskAnalysis:
    """One task's curves. roc and confusion are None when the split has a single class or
    the predictions are not finite; ndcg_curve[i] is NDCG@(i + 1) (NaN when undefined)."""

    roc: RocCurve | None
    confusion: Confusion | None
    ndcg_curve: tuple[float, ...]
    calibration: tuple[CalibrationBin, ...]


@dataclasses.dataclass(frozen=True)
class ImpressionGroup:
    """Test pairs whose impressions fall in one percentile group, and the metrics on them.

    Args:
        name: "0-25%", "25-75%" or "75-100%".
        lowest, highest: the impressions range of the group (inclusive).
        pairs, queries: how many pairs and distinct queries it holds.
        metrics: "task/metric" -> value (NaN when undefined) for GROUP_METRICS; NDCG ranks
            each query's products that fall in the group.
    """

    name: str
    lowest: int
    highest: int
    pairs: int
    queries: int
    metrics: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class MarketGroup:
    """The test pairs of one market and the metrics on them (GROUP_METRICS, as for the
    impression groups)."""

    name: str
    pairs: int
    queries: int
    metrics: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class ModelAnalysis:
    """Everything the report shows of one model: tasks by name in funnel order, impression
    groups in order, and the markets' groups (none for a log without markets)."""

    tasks: Mapping[str, TaskAnalysis]
    impression_groups: tuple[ImpressionGroup, ...]
    market_groups: tuple[MarketGroup, ...] = ()

    def to_dict(self) -> dict:
        def task_dict(t: TaskAnalysis) -> dict:
            return {
                "roc": None if t.roc is None else dataclasses.asdict(t.roc),
                "confusion": None if t.confusion is None else dataclasses.asdict(t.confusion),
                "ndcg_curve": [_nan_to_none(v) for v in t.ndcg_curve],
                "calibration": [dataclasses.asdict(b) for b in t.calibration],
            }

        return {
            "tasks": {name: task_dict(t) for name, t in self.tasks.items()},
            "impression_groups": [
                {
                    **dataclasses.asdict(g),
                    "metrics": {k: _nan_to_none(v) for k, v in g.metrics.items()},
                }
                for g in self.impression_groups
            ],
            "market_groups": [
                {
                    **dataclasses.asdict(g),
                    "metrics": {k: _nan_to_none(v) for k, v in g.metrics.items()},
                }
                for g in self.market_groups
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ModelAnalysis:
        def task(t: Mapping) -> TaskAnalysis:
            roc, confusion = t["roc"], t["confusion"]
            return TaskAnalysis(
                roc=None if roc is None else RocCurve(**{k: tuple(v) for k, v in roc.items()}),
                confusion=None
                if confusion is None
                else Confusion(
                    threshold=confusion["threshold"],
                    rule=confusion["rule"],
                    matrix=tuple(tuple(row) for row in confusion["matrix"]),
                ),
                ndcg_curve=tuple(_none_to_nan(v) for v in t["ndcg_curve"]),
                calibration=tuple(CalibrationBin(**b) for b in t["calibration"]),
            )

        return cls(
            tasks={name: task(t) for name, t in data["tasks"].items()},
            impression_groups=tuple(
                ImpressionGroup(
                    **{**g, "metrics": {k: _none_to_nan(v) for k, v in g["metrics"].items()}}
                )
                for g in data["impression_groups"]
            ),
            market_groups=tuple(
                MarketGroup(
                    **{**g, "metrics": {k: _none_to_nan(v) for k, v in g["metrics"].items()}}
                )
                for g in data.get("market_groups", [])
            ),
        )


def roc_points(labels: np.ndarray, scores: np.ndarray, max_points: int = MAX_ROC_POINTS):
    """The ROC curve thinned to at most `max_points` points, always keeping both ends.

    None when the split has a single class (the curve is undefined).
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if np.unique(labels).size < 2:
        return None
    fpr, tpr, thresholds = roc_curve(labels, scores)
    thresholds = thresholds.copy()
    thresholds[0] = float(np.max(scores)) + 1.0  # scikit-learn marks it infinite
    keep = np.unique(np.round(np.linspace(0, fpr.size - 1, min(max_points, fpr.size))).astype(int))
    return RocCurve(
        fpr=tuple(float(v) for v in fpr[keep]),
        tpr=tuple(float(v) for v in tpr[keep]),
        thresholds=tuple(float(v) for v in thresholds[keep]),
    )


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold (predict positive when score >= it) with the highest F1.

    Ties go to the highest such threshold. Without positives F1 is 0 everywhere, and 0.5 is
    returned.
    """
    positives = int(np.count_nonzero(labels))
    if positives == 0 or scores.size == 0:
        return 0.5
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order] > 0
    # Predicting the top i + 1 positive is possible only where the next score is lower.
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_tie]
    predicted = last_of_tie + 1
    f1 = 2.0 * true_positives / (predicted + positives)
    return float(sorted_scores[last_of_tie[int(np.argmax(f1))]])


def confusion_at(labels: np.ndarray, scores: np.ndarray, threshold: float, rule: str) -> Confusion:
    actual = labels > 0
    predicted = scores >= threshold
    tn = int(np.count_nonzero(~actual & ~predicted))
    fp = int(np.count_nonzero(~actual & predicted))
    fn = int(np.count_nonzero(actual & ~predicted))
    tp = int(np.count_nonzero(actual & predicted))
    return Confusion(threshold=float(threshold), rule=rule, matrix=((tn, fp), (fn, tp)))


def calibration_bins(
    labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS
) -> tuple[CalibrationBin, ...]:
    """Mean prediction against observed rate in `bins` equal-count bins (fewer for few pairs)."""
    if scores.size == 0:
        return ()
    order = np.argsort(scores, kind="stable")
    return tuple(
        CalibrationBin(
            lowest=float(scores[rows].min()),
            highest=float(scores[rows].max()),
            mean_predicted=float(scores[rows].mean()),
            observed_rate=float(np.mean(labels[rows] > 0)),
            pairs=int(rows.size),
        )
        for rows in np.array_split(order, min(bins, scores.size))
    )


def impression_bounds(impressions: np.ndarray) -> tuple[float, float]:
    """The 25th and 75th percentiles of the pairs' impressions."""
    if impressions.size == 0:
        return (math.nan, math.nan)
    low, high = np.percentile(impressions.astype(np.float64), GROUP_PERCENTILES)
    return float(low), float(high)


def impression_group_of(impressions: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """0, 1 or 2 per pair: impressions <= p25, in (p25, p75], > p75."""
    low, high = bounds
    return (impressions > low).astype(int) + (impressions > high).astype(int)


def _task_metrics(scored: ScoredSplit, rows: np.ndarray) -> dict[str, float]:
    values = {}
    for task in scored.tasks:
        labels, scores = scored.labels[task][rows], scored.predictions[task][rows]
        finite = bool(np.all(np.isfinite(scores)))
        values[f"{task}/auc"] = auc(labels, scores) if finite else math.nan
        values[f"{task}/ndcg@5"] = (
            ndcg_at_k(scored.query[rows], labels, scores, 5).mean if finite else math.nan
        )
    return values


def impression_groups(scored: ScoredSplit) -> tuple[ImpressionGroup, ...]:
    bounds = impression_bounds(scored.impressions)
    if scored.num_examples == 0:
        return ()
    group = impression_group_of(scored.impressions, bounds)
    groups = []
    for index, name in enumerate(GROUP_NAMES):
        rows = np.flatnonzero(group == index)
        if rows.size == 0:
            # Ties at a percentile can leave a group empty; it is shown as such.
            groups.append(
                ImpressionGroup(
                    name, 0, 0, 0, 0, dict.fromkeys(_metric_keys(scored.tasks), math.nan)
                )
            )
            continue
        groups.append(
            ImpressionGroup(
                name=name,
                lowest=int(scored.impressions[rows].min()),
                highest=int(scored.impressions[rows].max()),
                pairs=int(rows.size),
                queries=int(np.unique(scored.query[rows]).size),
                metrics=_task_metrics(scored, rows),
            )
        )
    return tuple(groups)


def market_groups(scored: ScoredSplit) -> tuple[MarketGroup, ...]:
    """One group per market of the split, in name order; none when the split has fewer than
    two markets."""
    if scored.market is None:
        return ()
    markets = sorted({m for m in scored.market if m})
    if len(markets) < 2:
        return ()
    groups = []
    for market in markets:
        rows = np.flatnonzero(scored.market == market)
        groups.append(
            MarketGroup(
                name=market,
                pairs=int(rows.size),
                queries=int(np.unique(scored.query[rows]).size),
                metrics=_task_metrics(scored, rows),
            )
        )
    return tuple(groups)


def _metric_keys(tasks: Sequence[str]) -> list[str]:
    return [f"{task}/{m}" for task in tasks for m in GROUP_METRICS]


def analyse_task(
    query: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    ks: Sequence[int] = NDCG_CURVE_KS,
) -> TaskAnalysis:
    if not np.all(np.isfinite(scores)):
        return TaskAnalysis(None, None, tuple(math.nan for _ in ks), ())
    roc = roc_points(labels, scores)
    confusion = None
    if roc is not None:
        threshold = best_f1_threshold(labels, scores)
        confusion = confusion_at(labels, scores, threshold, THRESHOLD_RULE)
    return TaskAnalysis(
        roc=roc,
        confusion=confusion,
        ndcg_curve=tuple(r.mean for r in ndcg_at_ks(query, labels, scores, ks).values()),
        calibration=calibration_bins(labels, scores),
    )


def analyse(scored: ScoredSplit) -> ModelAnalysis:
    """The report's curves and groups of one model's scored test split."""
    return ModelAnalysis(
        tasks={
            task: analyse_task(scored.query, scored.labels[task], scored.predictions[task])
            for task in scored.tasks
        },
        impression_groups=impression_groups(scored),
        market_groups=market_groups(scored),
    )


def paired_ndcg(
    candidate: ScoredSplit, champion: ScoredSplit, confidence: float, k: int = 5
) -> dict[str, PairedComparison | None]:
    """Per task, candidate - champion in NDCG@k over the test queries with a positive label.

    Both models scored the same split, so the queries pair up by their text. A task whose
    predictions are not finite (either model) has no per-query values: None. Both splits
    must have the same tasks.
    """
    if set(candidate.tasks) != set(champion.tasks):
        raise ValueError(
            f"the candidate's tasks {list(candidate.tasks)} and the champion's "
            f"{list(champion.tasks)} differ: the paired test compares the same tasks"
        )
    result: dict[str, PairedComparison | None] = {}
    for task in candidate.tasks:
        sides = []
        for scored in (candidate, champion):
            scores = scored.predictions[task]
            if not np.all(np.isfinite(scores)):
                break
            sides.append(ndcg_per_query(scored.query, scored.labels[task], scores, k))
        result[task] = paired_comparison(*sides, confidence=confidence) if len(sides) == 2 else None
    return result
