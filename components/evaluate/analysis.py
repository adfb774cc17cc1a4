"""What the evaluation report shows of one model on the test split, beyond the headline metrics.

Per task: the ROC curve (at most ~100 points), a confusion matrix at the threshold that
maximises F1 on the split, NDCG@k for k = 1..10, and calibration: ten equal-count bins of the
prediction, each with its mean prediction against what the model predicts, observed. A model
trained on rates (`targets="rate"`, the default) predicts a task's count per impression, so a
bin's observed value is its pairs' engagements over their impressions, and both sides are
weighted by impressions; a model trained on "count > 0" (`targets="any"`) predicts the 0/1
label, observed as the bin's share of positive pairs. The expected calibration error (ECE)
sums the bins' |predicted - observed|, weighted by the bins' impressions (pairs for "any"). Per impression group
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
# What a task's probability is compared with in the calibration bins (CalibrationTarget).
PER_IMPRESSION = "count per impression"  # targets="rate"
AT_LEAST_ONCE = "engaged at least once"  # targets="any"
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
    """One equal-count bin of the predictions: their mean against the observed rate (both
    impression-weighted when the target is the count per impression; `impressions` is then
    the bin's, else 0)."""

    lowest: float
    highest: float
    mean_predicted: float
    observed_rate: float
    pairs: int
    impressions: int = 0


@dataclasses.dataclass(frozen=True)
class TaskAnalysis:
    """One task's curves. roc and confusion are None when the split has a single class or
    the predictions are not finite; ndcg_curve[i] is NDCG@(i + 1) (NaN when undefined)."""

    roc: RocCurve | None
    confusion: Confusion | None
    ndcg_curve: tuple[float, ...]
    calibration: tuple[CalibrationBin, ...]
    calibration_target: str = AT_LEAST_ONCE


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
                "calibration_target": t.calibration_target,
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
                calibration_target=t.get("calibration_target", AT_LEAST_ONCE),
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
    labels: np.ndarray,
    scores: np.ndarray,
    bins: int = CALIBRATION_BINS,
    counts: np.ndarray | None = None,
    impressions: np.ndarray | None = None,
) -> tuple[CalibrationBin, ...]:
    """`bins` equal-count bins of the prediction (fewer for few pairs), each with its mean
    prediction against the observed rate: with `counts` and `impressions`, the bin's
    engagements over its impressions (each pair's count capped at its impressions, as the
    transform caps the rate it trains on) against the impression-weighted mean prediction;
    without, the share of positive `labels` against the plain mean."""
    if scores.size == 0:
        return ()
    order = np.argsort(scores, kind="stable")
    out = []
    for rows in np.array_split(order, min(bins, scores.size)):
        predicted, observed, shown = float(scores[rows].mean()), float(np.mean(labels[rows] > 0)), 0
        if counts is not None and impressions is not None:
            weights = impressions[rows].astype(np.float64)
            shown = int(weights.sum())
            if shown > 0:
                predicted = float(np.sum(scores[rows] * weights) / shown)
                engaged = np.minimum(counts[rows].astype(np.float64), weights)
                observed = float(engaged.sum() / shown)
        out.append(
            CalibrationBin(
                lowest=float(scores[rows].min()),
                highest=float(scores[rows].max()),
                mean_predicted=predicted,
                observed_rate=observed,
                pairs=int(rows.size),
                impressions=shown,
            )
        )
    return tuple(out)


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float:
    """The bins' |mean predicted - observed|, weighted by their impressions (by their pairs
    when they have none); NaN without bins.

    >>> b = [CalibrationBin(0, 0.1, 0.05, 0.15, 10, 100), CalibrationBin(0.1, 1, 0.5, 0.5, 10, 300)]
    >>> round(expected_calibration_error(b), 6)
    0.025
    """
    if not bins:
        return math.nan
    by_impressions = any(b.impressions for b in bins)
    weights = np.array([b.impressions if by_impressions else b.pairs for b in bins], np.float64)
    gaps = np.array([abs(b.mean_predicted - b.observed_rate) for b in bins])
    return float(np.sum(weights * gaps) / max(weights.sum(), 1.0))


def calibration_metrics(scored: ScoredSplit, per_impression: bool) -> dict[str, float]:
    """Per task, "t/ece" (expected_calibration_error over the deciles) and
    "t/observed_to_predicted": engagements over the sum of predicted engagements (impressions
    times the prediction; with `per_impression` False, positive pairs over the sum of
    predictions), 1 for a model right on average. NaN when undefined (non-finite
    predictions, no impressions)."""
    out = {}
    for task in scored.tasks:
        scores, labels = scored.predictions[task], scored.labels[task]
        counts, shown = _targets(scored, task, per_impression)
        if not np.all(np.isfinite(scores)) or scores.size == 0:
            out[f"{task}/ece"] = out[f"{task}/observed_to_predicted"] = math.nan
            continue
        out[f"{task}/ece"] = expected_calibration_error(
            calibration_bins(labels, scores, counts=counts, impressions=shown)
        )
        if counts is not None:
            weights = shown.astype(np.float64)
            observed = float(np.minimum(counts.astype(np.float64), weights).sum())
            expected = float(np.sum(scores * weights))
        else:
            observed, expected = float(np.count_nonzero(labels > 0)), float(scores.sum())
        out[f"{task}/observed_to_predicted"] = observed / expected if expected > 0 else math.nan
    return out


def _targets(scored: ScoredSplit, task: str, per_impression: bool):
    """(counts, impressions) to calibrate `task` against per impression, or (None, None)."""
    if per_impression and scored.counts is not None and task in scored.counts:
        return scored.counts[task], scored.impressions
    return None, None


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
    counts: np.ndarray | None = None,
    impressions: np.ndarray | None = None,
) -> TaskAnalysis:
    """One task's curves; with `counts` and `impressions`, calibrated against the count per
    impression (`calibration_bins`)."""
    target = AT_LEAST_ONCE if counts is None or impressions is None else PER_IMPRESSION
    if not np.all(np.isfinite(scores)):
        return TaskAnalysis(None, None, tuple(math.nan for _ in ks), (), target)
    roc = roc_points(labels, scores)
    confusion = None
    if roc is not None:
        threshold = best_f1_threshold(labels, scores)
        confusion = confusion_at(labels, scores, threshold, THRESHOLD_RULE)
    return TaskAnalysis(
        roc=roc,
        confusion=confusion,
        ndcg_curve=tuple(r.mean for r in ndcg_at_ks(query, labels, scores, ks).values()),
        calibration=calibration_bins(labels, scores, counts=counts, impressions=impressions),
        calibration_target=target,
    )


def analyse(scored: ScoredSplit, per_impression: bool = True) -> ModelAnalysis:
    """The report's curves and groups of one model's scored test split; `per_impression`:
    the model predicts each task's count per impression (trained with targets="rate"), so
    its calibration is read against that where the split has the counts."""
    tasks = {}
    for task in scored.tasks:
        counts, impressions = _targets(scored, task, per_impression)
        tasks[task] = analyse_task(
            scored.query, scored.labels[task], scored.predictions[task],
            counts=counts, impressions=impressions,
        )  # fmt: skip
    return ModelAnalysis(
        tasks=tasks,
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
