"""Statistics of each split, and a drift check between training and evaluation data.

Computed in the ingest job with a combiner over the kept rows (constant memory per split, any
runner), then written beside the examples:

- `statistics.json`: per split, rows and queries, every numeric column (the ranking features,
  the funnel counts, position) with count, missing, min, max, mean and standard deviation, the
  label rate of each task and the share of empty optional text fields; the funnel repairs and
  rejections of the whole input; and the drift findings;
- `statistics.md`: the same as a small readable report.

Drift: the eval and test splits are compared with train. A numeric column drifts when its mean
moves by more than `MEAN_SHIFT` training standard deviations or its missing share changes by
more than `MISSING_SHIFT`; a task drifts when its label rate differs from train's by more than
`LABEL_RATE_RATIO` times (either way). Rows of one query move together, so a small split
differs by chance: a shift must also exceed `CHANCE` standard errors, counted with the split's
queries as the sample size (a mean shift of 3 / sqrt(queries) train standard deviations; a
label rate difference of 3 sqrt(p (1 - p) / queries)). Findings are flagged (logged, in the
report and the artifact's metadata), not fatal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import apache_beam as beam
import numpy as np

from contract import schema as S

STATISTICS_FILE = "statistics.json"
REPORT_FILE = "statistics.md"
MEAN_SHIFT = 0.25  # training standard deviations
MISSING_SHIFT = 0.1  # absolute change of the missing share
LABEL_RATE_RATIO = 1.5
CHANCE = 3.0  # standard errors, with queries as the sample size


def numeric_columns(schema: S.RawSchema) -> tuple[str, ...]:
    return (*schema.feature_names, *schema.funnel, S.POSITION)


class SplitStatistics(beam.CombineFn):
    """Validated rows -> the accumulated statistics of their split."""

    def __init__(self, schema: S.RawSchema) -> None:
        self._numeric = numeric_columns(schema)
        self._tasks = schema.tasks

    def create_accumulator(self) -> dict:
        return {
            "rows": 0,
            # count, missing, min, max, sum, sum of squares
            "numeric": {c: [0, 0, math.inf, -math.inf, 0.0, 0.0] for c in self._numeric},
            "positives": dict.fromkeys((t.name for t in self._tasks), 0),
            "empty_text": dict.fromkeys(S.OPTIONAL_TEXT_COLUMNS, 0),
        }

    def add_input(self, acc: dict, rows: Any) -> dict:
        """Add a block of rows (`columnar.KeptRows`), or one row (a mapping)."""
        if isinstance(rows, Mapping):
            return self._add_row(acc, rows)
        columns = rows.columns
        acc["rows"] += len(rows)
        for column, stats in acc["numeric"].items():
            values = np.asarray(columns[column], np.float64)
            present = ~np.isnan(values)
            if column == S.POSITION:
                present &= values != 0.0  # 0.0: position unknown
            values = values[present]
            stats[1] += int(len(present) - len(values))
            if len(values):
                stats[0] += len(values)
                stats[2] = min(stats[2], float(values.min()))
                stats[3] = max(stats[3], float(values.max()))
                stats[4] += float(values.sum())
                stats[5] += float(np.dot(values, values))
        for task in self._tasks:
            acc["positives"][task.name] += int(task.label(np.asarray(columns[task.count])).sum())
        for column in acc["empty_text"]:
            acc["empty_text"][column] += sum(1 for v in columns[column] if not v)
        return acc

    def _add_row(self, acc: dict, row: Mapping[str, Any]) -> dict:
        acc["rows"] += 1
        for column, stats in acc["numeric"].items():
            value = row.get(column)
            if column == S.POSITION and not value:
                value = None  # 0.0 / absent: position unknown
            if value is None:
                stats[1] += 1
                continue
            value = float(value)
            stats[0] += 1
            stats[2] = min(stats[2], value)
            stats[3] = max(stats[3], value)
            stats[4] += value
            stats[5] += value * value
        for task in self._tasks:
            acc["positives"][task.name] += task.label(int(row[task.count]))
        for column in acc["empty_text"]:
            if not row.get(column):
                acc["empty_text"][column] += 1
        return acc

    def merge_accumulators(self, accumulators) -> dict:
        merged = self.create_accumulator()
        for acc in accumulators:
            merged["rows"] += acc["rows"]
            for column, stats in acc["numeric"].items():
                into = merged["numeric"][column]
                into[0] += stats[0]
                into[1] += stats[1]
                into[2] = min(into[2], stats[2])
                into[3] = max(into[3], stats[3])
                into[4] += stats[4]
                into[5] += stats[5]
            for task, n in acc["positives"].items():
                merged["positives"][task] += n
            for column, n in acc["empty_text"].items():
                merged["empty_text"][column] += n
        return merged

    def extract_output(self, acc: dict) -> dict:
        rows = acc["rows"]
        features = {}
        for column, (count, missing, low, high, total, squares) in acc["numeric"].items():
            mean = total / count if count else None
            variance = max(squares / count - mean * mean, 0.0) if count else None
            features[column] = {
                "count": count,
                "missing": missing,
                "missing_share": missing / rows if rows else 0.0,
                "min": low if count else None,
                "max": high if count else None,
                "mean": mean,
                "std": math.sqrt(variance) if variance is not None else None,
            }
        return {
            "rows": rows,
            "features": features,
            "label_rate": {t: (n / rows if rows else None) for t, n in acc["positives"].items()},
            "empty_text_share": {
                c: (n / rows if rows else None) for c, n in acc["empty_text"].items()
            },
        }


def drift_findings(splits: Mapping[str, dict]) -> list[dict]:
    """What differs between train and each other split beyond the thresholds (module doc)."""
    train = splits.get("train")
    findings: list[dict] = []
    if not train or not train["rows"]:
        return findings
    for name, other in splits.items():
        if name == "train" or not other["rows"]:
            continue
        sample = max(other.get("queries") or other["rows"], 1)
        for column, base in train["features"].items():
            got = other["features"][column]
            if base["mean"] is not None and got["mean"] is not None:
                scale = base["std"] or 1.0
                shift = (got["mean"] - base["mean"]) / scale
                if abs(shift) > max(MEAN_SHIFT, CHANCE / math.sqrt(sample)):
                    findings.append(
                        {
                            "split": name,
                            "column": column,
                            "kind": "mean_shift",
                            "value": shift,
                            "message": f"{column}: {name} mean {got['mean']:.4g} vs train "
                            f"{base['mean']:.4g} ({shift:+.2f} train std)",
                        }
                    )
            change = got["missing_share"] - base["missing_share"]
            share = base["missing_share"]
            if abs(change) > max(MISSING_SHIFT, CHANCE * math.sqrt(share * (1 - share) / sample)):
                findings.append(
                    {
                        "split": name,
                        "column": column,
                        "kind": "missing_shift",
                        "value": change,
                        "message": f"{column}: missing in {got['missing_share']:.1%} of {name} "
                        f"rows vs {base['missing_share']:.1%} of train",
                    }
                )
        for task, rate in train["label_rate"].items():
            got = other["label_rate"][task]
            if not rate or got is None:
                continue
            ratio = got / rate
            noise = CHANCE * math.sqrt(rate * (1 - rate) / sample)
            outside = ratio > LABEL_RATE_RATIO or ratio < 1 / LABEL_RATE_RATIO
            if outside and abs(got - rate) > noise:
                findings.append(
                    {
                        "split": name,
                        "column": task,
                        "kind": "label_rate",
                        "value": ratio,
                        "message": f"{task} label rate {got:.2%} in {name} vs {rate:.2%} in "
                        f"train ({ratio:.2f}x)",
                    }
                )
    return findings


def assemble(per_split: Mapping[str, dict], counts) -> dict:
    """The statistics artifact: every split (empty ones included), the input's funnel repairs
    and rejections, and the drift findings."""
    splits = {}
    for name in S.SPLITS:
        stats = per_split.get(name) or {"rows": 0, "features": {}, "label_rate": {}}
        splits[name] = {**stats, "queries": counts.splits[name].queries}
    return {
        "splits": splits,
        "input": {
            "rows_read": counts.rows_read,
            "funnel_violations_rejected": counts.dead_letter_by_reason.get("funnel_violation", 0),
            "funnel_violations_clipped": counts.funnel_clipped,
            "rows_dead_letter": counts.rows_dead_letter,
        },
        "thresholds": {
            "chance_standard_errors": CHANCE,
            "mean_shift_std": MEAN_SHIFT,
            "missing_share_change": MISSING_SHIFT,
            "label_rate_ratio": LABEL_RATE_RATIO,
        },
        "drift": drift_findings(splits),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def report(statistics: Mapping) -> str:
    """statistics.json as Markdown."""
    splits = statistics["splits"]
    names = list(splits)
    lines = ["# Ingest statistics", ""]
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    lines.append("| rows | " + " | ".join(str(splits[n]["rows"]) for n in names) + " |")
    lines.append("| queries | " + " | ".join(str(splits[n]["queries"]) for n in names) + " |")
    tasks = dict.fromkeys(t for n in names for t in splits[n]["label_rate"])
    for task in tasks:
        rates = [splits[n]["label_rate"].get(task) for n in names]
        lines.append(
            f"| {task} label rate | "
            + " | ".join("-" if r is None else f"{r:.2%}" for r in rates)
            + " |"
        )
    source = statistics["input"]
    lines += [
        "",
        f"Input: {source['rows_read']} rows read, {source['rows_dead_letter']} dead-lettered; "
        f"funnel violations: {source['funnel_violations_rejected']} rejected, "
        f"{source['funnel_violations_clipped']} clipped.",
        "",
        "| column | split | count | missing | min | max | mean | std |",
        "|---|---|---|---|---|---|---|---|",
    ]
    columns = next((list(splits[n]["features"]) for n in names if splits[n]["features"]), [])
    for column in columns:
        for name in names:
            stats = splits[name]["features"].get(column)
            if stats is None:
                continue
            lines.append(
                f"| {column} | {name} | "
                + " | ".join(
                    _cell(stats[k]) for k in ("count", "missing", "min", "max", "mean", "std")
                )
                + " |"
            )
    drift = statistics["drift"]
    lines += ["", f"## Drift against train: {len(drift)} finding(s)", ""]
    lines += [f"- {d['message']}" for d in drift] or ["- none beyond the thresholds"]
    return "\n".join(lines) + "\n"


def load(examples_dir: str) -> dict:
    import os

    from apache_beam.io.filesystems import FileSystems

    path = os.path.join(examples_dir, STATISTICS_FILE)
    with FileSystems.open(path) as fh:
        return json.loads(fh.read().decode("utf-8"))
