"""The report's plots with matplotlib (Agg, no display), each returned as a base64 PNG.

One figure per view with a panel per task of the report, in funnel order; the candidate is drawn solid, the champion dashed.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from matplotlib.figure import Figure

from components.evaluate.analysis import GROUP_NAMES, NDCG_CURVE_KS, PER_IMPRESSION, ModelAnalysis
from components.evaluate.report import EvaluationReport

CANDIDATE_COLOR = "#1f6fb4"
CHAMPION_COLOR = "#d9731a"
_PANEL = (4.2, 3.6)


def _figure(report: EvaluationReport) -> tuple[Figure, list]:
    """A row of panels, one per task of the report; the width grows with the tasks."""
    panels = len(report.tasks)
    figure = Figure(figsize=(_PANEL[0] * panels, _PANEL[1]), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)
    return figure, list(axes[0])


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _models(report: EvaluationReport) -> list[tuple[str, ModelAnalysis, str, str]]:
    models = [("candidate", report.candidate, CANDIDATE_COLOR, "-")]
    if report.champion is not None:
        models.append(("champion", report.champion, CHAMPION_COLOR, "--"))
    return models


def _undefined(axis, text: str = "undefined on this split") -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes, color="grey")


def roc_figure(report: EvaluationReport) -> str:
    figure, axes = _figure(report)
    for axis, task in zip(axes, report.tasks, strict=True):
        axis.plot([0, 1], [0, 1], color="lightgrey", linewidth=1)
        drawn = False
        for name, analysis, color, style in _models(report):
            roc = analysis.tasks[task].roc
            if roc is None:
                continue
            value = report.metric(name, f"{task}/auc")
            axis.plot(roc.fpr, roc.tpr, style, color=color, label=f"{name} AUC {value:.3f}")
            drawn = True
        if not drawn:
            _undefined(axis)
        axis.set(title=f"ROC: {task}", xlabel="false positive rate", ylabel="true positive rate")
        axis.set(xlim=(0, 1), ylim=(0, 1.01))
        if drawn:
            axis.legend(loc="lower right", fontsize=8)
    return _png(figure)


def ndcg_figure(report: EvaluationReport) -> str:
    figure, axes = _figure(report)
    for axis, task in zip(axes, report.tasks, strict=True):
        for name, analysis, color, style in _models(report):
            curve = analysis.tasks[task].ndcg_curve
            axis.plot(
                NDCG_CURVE_KS, curve, style, marker="o", markersize=3, color=color, label=name
            )
        axis.set(title=f"NDCG@k: {task}", xlabel="k", ylabel="NDCG@k", ylim=(0, 1.01))
        axis.set_xticks(NDCG_CURVE_KS)
        axis.legend(loc="lower right", fontsize=8)
    return _png(figure)


def _zoom(values: list[float]) -> tuple[float, float]:
    """Axis limits around `values` with some margin, within [0, 1]."""
    low, high = min(values), max(values)
    margin = max(0.02, 0.08 * (high - low))
    return max(0.0, low - margin), min(1.0, high + margin)


def calibration_figure(report: EvaluationReport) -> str:
    figure, axes = _figure(report)
    for axis, task in zip(axes, report.tasks, strict=True):
        predicted, observed = [], []
        for name, analysis, color, style in _models(report):
            bins = analysis.tasks[task].calibration
            if not bins:
                continue
            predicted += [b.mean_predicted for b in bins]
            observed += [b.observed_rate for b in bins]
            axis.plot(
                [b.mean_predicted for b in bins],
                [b.observed_rate for b in bins],
                style,
                marker="o",
                markersize=4,
                color=color,
                label=name,
            )
        if not predicted:
            _undefined(axis)
            continue
        # Zoomed to the predictions (which may span a narrow range); the diagonal is y = x.
        x_limits = _zoom(predicted)
        y_limits = _zoom(predicted + observed)
        axis.plot(x_limits, x_limits, color="grey", linewidth=1, label="calibrated (y = x)")
        axis.set(title=f"Calibration by decile: {task}", xlim=x_limits, ylim=y_limits)
        target = report.candidate.tasks[task].calibration_target
        weighted = " (impression-weighted)" if target == PER_IMPRESSION else ""
        axis.set(xlabel=f"mean predicted probability{weighted}", ylabel=f"observed: {target}")
        axis.legend(loc="upper left", fontsize=8)
    return _png(figure)


def impression_figure(report: EvaluationReport) -> str:
    figure, axes = _figure(report)
    series = [
        (name, metric, color, hatch)
        for name, _, color, _ in _models(report)
        for metric, hatch in (("auc", ""), ("ndcg@5", "//"))
    ]
    by_model = {name: analysis for name, analysis, _, _ in _models(report)}
    width = 0.8 / len(series)
    positions = np.arange(len(GROUP_NAMES))
    for axis, task in zip(axes, report.tasks, strict=True):
        for i, (name, metric, color, hatch) in enumerate(series):
            groups = by_model[name].impression_groups
            values = [g.metrics.get(f"{task}/{metric}", math.nan) for g in groups]
            values = [0.0 if v is None or math.isnan(v) else v for v in values]
            axis.bar(
                positions[: len(values)] + (i - (len(series) - 1) / 2) * width,
                values,
                width,
                color=color,
                alpha=1.0 if metric == "auc" else 0.55,
                hatch=hatch,
                edgecolor="white",
                label=f"{name} {metric}",
            )
        axis.set_xticks(positions, [f"{n} of\nimpressions" for n in GROUP_NAMES], fontsize=8)
        axis.set(title=f"By impression group: {task}", ylim=(0, 1.05))
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(series), fontsize=8)
    return _png(figure)
