"""The evaluation report's content: one JSON file that the HTML page and the text are made from.

The evaluate step writes it as report.json beside blessing.json, so the same report can be
printed or re-rendered later from a run directory (`python -m components.evaluate report`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping

from components.evaluate.analysis import ModelAnalysis

REPORT_FILE = "report.json"
# The headline metrics of every task, in the order the tables show them.
HEADLINE_METRICS = ("auc", "ndcg@1", "ndcg@5", "ndcg@10")


def _metrics_to_json(metrics: Mapping[str, float] | None) -> dict | None:
    if metrics is None:
        return None
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}


def _metrics_from_json(metrics: Mapping | None) -> dict | None:
    if metrics is None:
        return None
    return {k: math.nan if v is None else v for k, v in metrics.items()}


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """The candidate, the champion (None on a first run) and the gate's verdict.

    Args:
        split: the file pattern of the test split both models were scored on.
        candidate_uri, champion_uri: the SavedModels scored (champion_uri None on a first run).
        candidate_metrics, champion_metrics: compute_metrics of each ("click/auc", ...; NaN
            when undefined).
        candidate, champion: their curves and impression groups; the candidate's tasks are
            the report's (`tasks`).
        blessing: the blessing as written to blessing.json (Blessing.to_dict), with the
            checks, the paired NDCG@5 comparison per task and the comparison with the best
            no-training reference per task.
        reference_metrics: compute_metrics of each no-training reference, by name ({} when
            none were scored: reference_check "off").
        reference_notes: the references left out and why (e.g. no zero-shot reference for a
            random-weight encoder).
    """

    split: str
    candidate_uri: str
    champion_uri: str | None
    candidate_metrics: Mapping[str, float]
    champion_metrics: Mapping[str, float] | None
    candidate: ModelAnalysis
    champion: ModelAnalysis | None
    blessing: Mapping
    reference_metrics: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    reference_notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.champion_metrics is None) != (self.champion is None):
            raise ValueError("champion_metrics and champion must both be given or both be None")

    @property
    def tasks(self) -> tuple[str, ...]:
        """The evaluated tasks, in funnel order."""
        return tuple(self.candidate.tasks)

    @property
    def paired(self) -> Mapping[str, Mapping | None]:
        """Per task, the paired NDCG@5 comparison as a dict ({} on a first run)."""
        return self.blessing.get("paired") or {}

    @property
    def references(self) -> Mapping[str, Mapping | None]:
        """Per task, the comparison with the best reference as a dict ({} without any)."""
        return self.blessing.get("references") or {}

    def metric(self, which: str, key: str) -> float:
        """A headline metric of "candidate" or "champion" (NaN when absent or undefined)."""
        metrics = self.candidate_metrics if which == "candidate" else self.champion_metrics
        value = (metrics or {}).get(key)
        return math.nan if value is None else float(value)

    def headline_rows(self) -> list[tuple[str, str]]:
        """(task, metric) of the side-by-side table: every task's headline metrics, then the
        relevance label's NDCG@k when the evaluation had one."""
        rows = [(t, m) for t in self.tasks for m in HEADLINE_METRICS]
        return rows + [
            ("relevance", m)
            for m in HEADLINE_METRICS
            if f"relevance/{m}" in (self.candidate_metrics or {})
        ]

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "candidate_uri": self.candidate_uri,
            "champion_uri": self.champion_uri,
            "candidate_metrics": _metrics_to_json(self.candidate_metrics),
            "champion_metrics": _metrics_to_json(self.champion_metrics),
            "candidate": self.candidate.to_dict(),
            "champion": None if self.champion is None else self.champion.to_dict(),
            "blessing": dict(self.blessing),
            "reference_metrics": {
                name: _metrics_to_json(m) for name, m in self.reference_metrics.items()
            },
            "reference_notes": list(self.reference_notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> EvaluationReport:
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = required - set(data)
        if missing:
            raise ValueError(f"not an evaluation report: it lacks {sorted(missing)}")
        champion = data["champion"]
        return cls(
            split=data["split"],
            candidate_uri=data["candidate_uri"],
            champion_uri=data["champion_uri"],
            candidate_metrics=_metrics_from_json(data["candidate_metrics"]),
            champion_metrics=_metrics_from_json(data["champion_metrics"]),
            candidate=ModelAnalysis.from_dict(data["candidate"]),
            champion=None if champion is None else ModelAnalysis.from_dict(champion),
            blessing=data["blessing"],
            reference_metrics={
                name: _metrics_from_json(m) for name, m in data.get("reference_metrics", {}).items()
            },
            reference_notes=tuple(data.get("reference_notes", ())),
        )

    def write(self, directory: str) -> str:
        path = os.path.join(directory, REPORT_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1, allow_nan=False)
        return path

    @classmethod
    def read(cls, path: str) -> EvaluationReport:
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not valid JSON: {err}") from err
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{path} is not an evaluation report this version reads: {err}"
            ) from err


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for the tables; "n/a" when undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 4) -> str:
    text = fmt(value, digits)
    return text if text == "n/a" else f"{value:+.{digits}f}"


def verdict_title(blessing: Mapping) -> str:
    if blessing.get("forced"):
        return "BLESSED (FORCED)"
    return "BLESSED" if blessing.get("blessed") else "NOT BLESSED"


def paired_verdict(paired: Mapping | None) -> str:
    """What a paired comparison says, in words."""
    if paired is None:
        return "undefined (predictions not finite)"
    if paired["queries"] < 2:
        return "too few queries to test"
    low, high = paired["ci_low"], paired["ci_high"]
    if low is not None and low > 0:
        return "candidate significantly better"
    if high is not None and high < 0:
        return "candidate significantly worse"
    return "no significant difference"


def reference_rows(report: EvaluationReport) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the references table: per task, the candidate's NDCG@5, each
    reference's, the best reference, the paired difference (candidate - best), the queries,
    the one-sided p-value and the check's outcome; no rows without references."""
    names = list(report.reference_metrics)
    outcomes = {
        c["metric"]: c["outcome"]
        for c in report.blessing.get("checks", ())
        if c["check"] == "reference"
    }
    rows = []
    for task in report.tasks:
        key = f"{task}/ndcg@5"
        cells = [task, fmt(report.metric("candidate", key))]
        cells += [fmt(report.reference_metrics[n].get(key)) for n in names]
        comparison = report.references.get(task)
        paired = (comparison or {}).get("paired")
        if comparison is None or paired is None:
            cells += [comparison["reference"] if comparison else "n/a", "n/a", "n/a", "n/a"]
        else:
            p = comparison["p_less"]
            cells += [
                comparison["reference"],
                signed(paired["mean_difference"]),
                str(paired["queries"]),
                "n/a" if p is None else f"{p:.4g}",
            ]
        rows.append([*cells, outcomes.get(key, "-")])
    header = ["task", "candidate", *names, "best", "difference", "queries", "one-sided p", "check"]
    return (header, rows) if names else (header, [])


GROUP_METRICS = ("auc", "ndcg@5")


def _group_cells(keys: list[str], group, champion: dict) -> list[str]:
    """One cell per metric key of a group, the champion's same-named group's value in
    brackets when it has one."""
    cells = []
    for key in keys:
        cell = fmt(group.metrics.get(key), 3)
        if group.name in champion:
            cell += f" ({fmt(champion[group.name].metrics.get(key), 3)})"
        cells.append(cell)
    return cells


def market_group_rows(report: EvaluationReport) -> tuple[list[str], list[list[str]]]:
    """(metric keys, rows) of the market table: market, pairs, queries, then one cell per
    key (the champion's value in brackets when it has that market); no rows without markets."""
    keys = [f"{t}/{m}" for t in report.tasks for m in GROUP_METRICS]
    champion = {g.name: g for g in (report.champion.market_groups if report.champion else ())}
    rows = [
        [group.name, str(group.pairs), str(group.queries), *_group_cells(keys, group, champion)]
        for group in report.candidate.market_groups
    ]
    return keys, rows


def impression_group_rows(
    report: EvaluationReport, dash: str = "-"
) -> tuple[list[str], list[list[str]]]:
    """(metric keys, rows) of the impression-group table: group, impression span, pairs,
    queries, then one cell per key (the champion's value in brackets when there is one).
    Cells are plain text; `dash` joins the span's ends."""
    keys = [f"{t}/{m}" for t in report.tasks for m in GROUP_METRICS]
    champion = {g.name: g for g in (report.champion.impression_groups if report.champion else ())}
    rows = []
    for group in report.candidate.impression_groups:
        cells = _group_cells(keys, group, champion)
        span = f"{group.lowest}{dash}{group.highest}" if group.pairs else "empty"
        rows.append([group.name, span, str(group.pairs), str(group.queries), *cells])
    return keys, rows
