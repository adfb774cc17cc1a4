"""Statistics of each split, and a drift check between training and evaluation data.

Computed in the ingest job with a combiner over the kept rows (`SplitStatistics`: constant
memory per split, any runner, every column in one pass, see `feature_stats`), then written
beside the examples (by `statistics_files`):

- `statistics.json`: per split, rows and queries, every numeric column (the ranking features,
  the funnel counts, position) with count, missing, min, max, mean and standard deviation, the
  label rate of each task and the share of empty optional text fields; the funnel repairs and
  rejections of the whole input; and the drift findings;
- `statistics/Split-<split>/FeatureStats.pb`: the same numbers and more (median, zeros,
  histograms and quantiles; each text column's distinct values, top values and length) as
  TensorFlow Data Validation's DatasetFeatureStatisticsList; `Split-<split>/SchemaDiff.pb`
  and `anomalies.pbtxt`: the drift findings of eval and test as TFDV's Anomalies;
- `statistics.md` and `statistics.html`: readable views, made from those protos.

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

import base64
import json
import math
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from components.ingest import feature_stats
from contract import schema as S

STATISTICS_FILE = "statistics.json"
REPORT_FILE = "statistics.md"
HTML_FILE = "statistics.html"
FACETS_FILE = "facets_overview.html"  # Facets Overview of the splits (loads Facets from a CDN)
TFDV_DIR = "statistics"  # Split-<split>/ folders, as TFX's StatisticsGen and ExampleValidator
FEATURE_STATS_FILE = "FeatureStats.pb"  # a DatasetFeatureStatisticsList (tfdv.load_stats_binary)
ANOMALIES_FILE = "SchemaDiff.pb"  # a serialized Anomalies (anomalies_util.load_anomalies_binary)
ANOMALIES_TEXT_FILE = "anomalies.pbtxt"  # the same in text format (tfdv.load_anomalies_text)
MEAN_SHIFT = 0.25  # training standard deviations
MISSING_SHIFT = 0.1  # absolute change of the missing share
LABEL_RATE_RATIO = 1.5
CHANCE = 3.0  # standard errors, with queries as the sample size


def tfdv_split_dir(examples_dir: str, split: str) -> str:
    """Where a split's TFDV statistics (and, for eval and test, its anomalies) are."""
    return os.path.join(examples_dir, TFDV_DIR, f"Split-{split}")


def numeric_columns(schema: S.RawSchema) -> tuple[str, ...]:
    return (*schema.feature_names, *schema.funnel, S.POSITION)


def text_columns(schema: S.RawSchema) -> tuple[str, ...]:
    """The text columns of a kept row: the contract's, and the market when declared."""
    return S.TEXT_COLUMNS + ((S.MARKET,) if schema.markets else ())


class SplitOutput(NamedTuple):
    """What `SplitStatistics` gives for a split: its entry of statistics.json and its TFDV
    statistics (a DatasetFeatureStatistics without a name: `statistics_files` names it)."""

    summary: dict
    features: statistics_pb2.DatasetFeatureStatistics


class SplitStatistics(beam.CombineFn):
    """Validated rows -> the accumulated statistics of their split (`SplitOutput`), every
    column in one pass (`feature_stats`)."""

    def __init__(self, schema: S.RawSchema) -> None:
        self._numeric = numeric_columns(schema)
        self._counts = frozenset(schema.funnel)
        self._tasks = schema.tasks
        self._texts = text_columns(schema)

    def create_accumulator(self) -> dict:
        numbers = (*self._numeric, *(t.name for t in self._tasks))
        return {
            "rows": 0,
            "numbers": {c: feature_stats.Numbers() for c in numbers},
            "texts": {c: feature_stats.Texts() for c in self._texts},
        }

    def add_input(self, acc: dict, rows: Any) -> dict:
        """Add a block of rows (`columnar.KeptRows`), or one row (a mapping)."""
        columns = self._row_columns(rows) if isinstance(rows, Mapping) else rows.columns
        n = len(columns[S.QUERY])
        acc["rows"] += n
        for column in self._numeric:
            values = np.asarray(columns[column], np.float64)
            present = ~np.isnan(values)
            if column == S.POSITION:
                present &= values != 0.0  # 0.0: position unknown
            acc["numbers"][column].add(values[present], n - int(present.sum()))
        for task in self._tasks:
            labels = task.label(np.asarray(columns[task.count])).astype(np.float64)
            acc["numbers"][task.name].add(labels, 0)
        for column in self._texts:
            acc["texts"][column].add(columns[column])
        return acc

    def _row_columns(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """One row as the columns of a block of one row (absent and None: missing)."""
        columns: dict[str, Any] = {c: [row.get(c) or ""] for c in self._texts}
        for column in self._numeric:
            value = row.get(column)
            columns[column] = np.asarray([np.nan if value is None else float(value)])
        for task in self._tasks:
            columns[task.count] = np.asarray([int(row[task.count])])
        return columns

    def merge_accumulators(self, accumulators) -> dict:
        merged = self.create_accumulator()
        for acc in accumulators:
            merged["rows"] += acc["rows"]
            for kind in ("numbers", "texts"):
                for column, stats in acc[kind].items():
                    merged[kind][column].merge(stats)
        return merged

    def compact(self, acc: dict) -> dict:
        for stats in acc["numbers"].values():
            stats.sketch.Compact()
        return acc

    def extract_output(self, acc: dict) -> SplitOutput:
        rows = acc["rows"]
        numbers, texts = acc["numbers"], acc["texts"]
        features = {}
        for column in self._numeric:
            stats = numbers[column]
            features[column] = {
                "count": stats.count,
                "missing": stats.missing,
                "missing_share": stats.missing / rows if rows else 0.0,
                "min": stats.low if stats.count else None,
                "max": stats.high if stats.count else None,
                "mean": stats.mean(),
                "std": stats.std(),
            }
        summary = {
            "rows": rows,
            "features": features,
            "label_rate": {t.name: numbers[t.name].mean() for t in self._tasks},
            "empty_text_share": {
                c: (texts[c].empty / rows if rows else None) for c in S.OPTIONAL_TEXT_COLUMNS
            },
        }
        dataset = statistics_pb2.DatasetFeatureStatistics(num_examples=rows)
        for column in self._numeric:
            kind = feature_stats.INT if column in self._counts else feature_stats.FLOAT
            dataset.features.append(numbers[column].to_proto(column, kind))
        for task in self._tasks:
            dataset.features.append(numbers[task.name].to_proto(task.name, feature_stats.INT))
        for column in self._texts:
            dataset.features.append(texts[column].to_proto(column))
        return SplitOutput(summary, dataset)


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


def encode_outputs(outputs: Mapping[str, SplitOutput]) -> str:
    """The combiner's outputs by split as one line of JSON (the job's part file)."""
    return json.dumps(
        {
            split: {
                "summary": out.summary,
                "features": base64.b64encode(out.features.SerializeToString()).decode("ascii"),
            }
            for split, out in outputs.items()
        }
    )


def decode_outputs(text: str) -> dict[str, SplitOutput]:
    """`encode_outputs` read back ("" when no split had a row)."""
    return {
        split: SplitOutput(
            out["summary"],
            statistics_pb2.DatasetFeatureStatistics.FromString(base64.b64decode(out["features"])),
        )
        for split, out in json.loads(text or "{}").items()
    }


def load(examples_dir: str) -> dict:
    """statistics.json of an ingest output."""
    from apache_beam.io.filesystems import FileSystems

    path = os.path.join(examples_dir, STATISTICS_FILE)
    with FileSystems.open(path) as fh:
        return json.loads(fh.read().decode("utf-8"))
