"""Readable views of the ingest statistics, made from the TFDV protos alone (one source).

- `markdown` (statistics.md): rows, queries and label rates per split, the input's repairs
  and rejections, a table of the numeric columns and one of the text columns, the drift
  findings;
- `html` (statistics.html, the Kubeflow UI's view of the step): the same, with a table per
  split of every feature and each numeric feature's histogram drawn inline. It needs nothing
  from the network;
- `facets_html` (facets_overview.html): Facets Overview of the splits side by side, as
  `tfdv.visualize_statistics` shows them. It loads Facets from a CDN (cdnjs and GitHub), so
  it needs a browser with network access; the two views above do not.

The inputs: the splits' DatasetFeatureStatistics (named by split), the Anomalies of the
splits compared with train, the input's counts (statistics.json's "input": rows read,
dead-lettered, funnel violations) and the task names (the label features).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from components.html_table import escape as _e
from components.html_table import table as _table
from components.ingest import anomalies as anomalies_lib
from components.ingest import feature_stats as F
from contract import schema as S

_Feature = statistics_pb2.FeatureNameStatistics
_NUMERIC_HEADER = ["count", "missing", "zeros", "min", "median", "max", "mean", "std"]
_TEXT_HEADER = ["present", "empty", "distinct", "avg length (bytes)"]
NOTE = (
    "A missing value is an absent optional feature, a position of 0 (unknown) or an empty "
    "text. Medians, quantiles and histograms come from a quantiles sketch (rank error "
    f"{F.QUANTILES_EPSILON:.0%}); a distinct count above {F.DISTINCT_BUCKETS} and the counts "
    f"of top values in a column of more than {F.RANK_HISTOGRAM_BUCKETS} distinct values are "
    "estimates."
)
TOP_SHOWN = 5  # top values shown per text column in the HTML view
FACETS_SCRIPT = "https://cdnjs.cloudflare.com/ajax/libs/webcomponentsjs/1.3.3/webcomponents-lite.js"
FACETS_IMPORT = (
    "https://raw.githubusercontent.com/PAIR-code/facets/master/facets-dist/facets-jupyter.html"
)


def feature_name(feature: _Feature) -> str:
    return ".".join(feature.path.step) if feature.HasField("path") else feature.name


def _features(dataset: statistics_pb2.DatasetFeatureStatistics) -> dict[str, _Feature]:
    return {feature_name(f): f for f in dataset.features}


def queries(dataset: statistics_pb2.DatasetFeatureStatistics) -> int | None:
    """The split's distinct (normalised) queries, kept on the query feature's custom stats
    (0 for a split without rows, which has no features)."""
    if not dataset.num_examples:
        return 0
    query = _features(dataset).get(S.QUERY)
    if query is None:
        return None
    found = [c.num for c in query.custom_stats if c.name == F.QUERIES_STAT]
    return int(found[0]) if found else None


def _numeric_cells(feature: _Feature) -> list[float | int | None]:
    stats = feature.num_stats
    present = stats.common_stats.num_non_missing
    values = [stats.min, stats.median, stats.max, stats.mean, stats.std_dev]
    return [
        present,
        stats.common_stats.num_missing,
        stats.num_zeros if present else None,
        *(v if present else None for v in values),
    ]


def _text_cells(feature: _Feature) -> list[float | int | None]:
    stats = feature.string_stats
    present = stats.common_stats.num_non_missing
    return [
        present,
        stats.common_stats.num_missing,
        stats.unique if present else None,
        stats.avg_length if present else None,
    ]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _label_rate(dataset: statistics_pb2.DatasetFeatureStatistics, task: str) -> float | None:
    feature = _features(dataset).get(task)
    if feature is None or not feature.num_stats.common_stats.num_non_missing:
        return None
    return feature.num_stats.mean


def _md_text(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _source_line(source: Mapping) -> str:
    return (
        f"Input: {source['rows_read']} rows read, {source['rows_dead_letter']} dead-lettered; "
        f"funnel violations: {source['funnel_violations_rejected']} rejected, "
        f"{source['funnel_violations_clipped']} clipped."
    )


def _findings(
    datasets: Sequence[statistics_pb2.DatasetFeatureStatistics],
    anomalies: Mapping[str, anomalies_pb2.Anomalies],
) -> list[tuple[str, str, anomalies_pb2.AnomalyInfo.Reason]]:
    """(split, feature, reason) of every drift finding, by split, then in feature order."""
    order = list(dict.fromkeys(feature_name(f) for d in datasets for f in d.features))
    return [
        (split, name, reason)
        for split in (d.name for d in datasets)
        if split in anomalies
        for name, reason in anomalies_lib.reasons(anomalies[split], order)
    ]


def _kinds(
    datasets: Sequence[statistics_pb2.DatasetFeatureStatistics], labels: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(numeric columns but the labels, text columns) in the statistics' order."""
    numeric: dict[str, None] = {}
    text: dict[str, None] = {}
    for dataset in datasets:
        for feature in dataset.features:
            name = feature_name(feature)
            if feature.HasField("string_stats"):
                text[name] = None
            elif feature.HasField("num_stats") and name not in labels:
                numeric[name] = None
    return list(numeric), list(text)


def markdown(
    datasets: Sequence[statistics_pb2.DatasetFeatureStatistics],
    anomalies: Mapping[str, anomalies_pb2.Anomalies],
    source: Mapping,
    labels: Sequence[str],
) -> str:
    """statistics.md."""
    names = [d.name for d in datasets]
    lines = ["# Ingest statistics", ""]
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    lines.append("| rows | " + " | ".join(str(d.num_examples) for d in datasets) + " |")
    lines.append("| queries | " + " | ".join(_cell(queries(d)) for d in datasets) + " |")
    for task in labels:
        rates = [_rate(_label_rate(d, task)) for d in datasets]
        lines.append(f"| {task} label rate | " + " | ".join(rates) + " |")
    numeric, text = _kinds(datasets, labels)
    lines += ["", _source_line(source), ""]
    lines.append("| column | split | " + " | ".join(_NUMERIC_HEADER) + " |")
    lines.append("|---|---|" + "---|" * len(_NUMERIC_HEADER))
    for column in numeric:
        for dataset in datasets:
            feature = _features(dataset).get(column)
            if feature is not None:
                cells = " | ".join(_cell(v) for v in _numeric_cells(feature))
                lines.append(f"| {column} | {dataset.name} | {cells} |")
    lines += ["", "| text column | split | " + " | ".join(_TEXT_HEADER) + " | most frequent |"]
    lines.append("|---|---|" + "---|" * (len(_TEXT_HEADER) + 1))
    for column in text:
        for dataset in datasets:
            feature = _features(dataset).get(column)
            if feature is None:
                continue
            top = feature.string_stats.top_values
            most = f"{_md_text(top[0].value)} ({top[0].frequency:.0f})" if top else "-"
            cells = " | ".join(_cell(v) for v in _text_cells(feature))
            lines.append(f"| {column} | {dataset.name} | {cells} | {most} |")
    findings = _findings(datasets, anomalies)
    lines += ["", f"## Drift against train: {len(findings)} finding(s)", ""]
    lines += [f"- {reason.description}" for _, _, reason in findings] or [
        "- none beyond the thresholds"
    ]
    return "\n".join(lines) + "\n"


_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px;
       color: #1d1d1f; max-width: 1280px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
h3 { font-size: 15px; margin: 16px 0 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #d0d4da; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f2f4f7; } td.text, th.text { text-align: left; }
.meta, .note { color: #555; font-size: 13px; } .note { font-size: 12px; max-width: 1100px; }
.warn { color: #9a6a00; font-weight: 600; }
svg.hist rect { fill: #5b8def; }
ul { font-size: 14px; margin-top: 4px; }
"""


def _histogram_svg(feature: _Feature, width: int = 150, height: int = 30) -> str:
    """The feature's equal-width histogram as inline SVG bars, each bucket's range and count
    in its tooltip."""
    standard = [
        h for h in feature.num_stats.histograms if h.type == statistics_pb2.Histogram.STANDARD
    ]
    if not standard or not standard[0].buckets:
        return ""
    buckets = standard[0].buckets
    top = max(b.sample_count for b in buckets) or 1.0
    step = width / len(buckets)
    bars = []
    for i, b in enumerate(buckets):
        h = max(b.sample_count / top * height, 1.0 if b.sample_count else 0.0)
        tip = f"{b.low_value:.4g} to {b.high_value:.4g}: {b.sample_count:.0f}"
        bars.append(
            f'<rect x="{i * step:.1f}" y="{height - h:.1f}" width="{step - 1:.1f}" '
            f'height="{h:.1f}"><title>{_e(tip)}</title></rect>'
        )
    return (
        f'<svg class="hist" width="{width}" height="{height}" role="img" '
        f'aria-label="histogram">{"".join(bars)}</svg>'
    )


def _type_name(feature: _Feature) -> str:
    return _Feature.Type.Name(feature.type)


def _split_section(dataset: statistics_pb2.DatasetFeatureStatistics, labels: Sequence[str]) -> str:
    numeric_rows, text_rows = [], []
    for feature in dataset.features:
        name = feature_name(feature)
        if feature.HasField("num_stats"):
            role = "label" if name in labels else _type_name(feature)
            cells = [_e(name), _e(role), *(_e(_cell(v)) for v in _numeric_cells(feature))]
            numeric_rows.append([*cells, _histogram_svg(feature)])
        elif feature.HasField("string_stats"):
            top = ", ".join(
                f"{_e(v.value)} ({v.frequency:.0f})"
                for v in feature.string_stats.top_values[:TOP_SHOWN]
            )
            cells = [_e(name), *(_e(_cell(v)) for v in _text_cells(feature))]
            text_rows.append([*cells, top or "-"])
    count = queries(dataset)
    title = f"{dataset.name}: {dataset.num_examples} rows"
    if count is not None:
        title += f", {count} queries"
    parts = [f"<h2>{_e(title)}</h2>"]
    if numeric_rows:
        header = ["feature", "type", *_NUMERIC_HEADER, "histogram (equal width)"]
        parts += ["<h3>Numeric features</h3>", _table(header, numeric_rows, (0, 1))]
    if text_rows:
        header = ["feature", *_TEXT_HEADER, f"top {TOP_SHOWN} values (count)"]
        parts += ["<h3>Text features</h3>", _table(header, text_rows, (0, 5))]
    if not numeric_rows and not text_rows:
        parts.append('<p class="meta">No rows.</p>')
    return "".join(parts)


def html(
    datasets: Sequence[statistics_pb2.DatasetFeatureStatistics],
    anomalies: Mapping[str, anomalies_pb2.Anomalies],
    source: Mapping,
    labels: Sequence[str],
) -> str:
    """statistics.html: one self-contained page."""
    names = [d.name for d in datasets]
    overview = [
        ["rows", *(_e(d.num_examples) for d in datasets)],
        ["queries", *(_e(_cell(queries(d))) for d in datasets)],
        *[[f"{_e(t)} label rate", *(_rate(_label_rate(d, t)) for d in datasets)] for t in labels],
    ]
    findings = _findings(datasets, anomalies)
    drift = "".join(
        f'<li><span class="warn">{_e(split)}</span> {_e(reason.description)} '
        f'<span class="meta">({_e(anomalies_pb2.AnomalyInfo.Type.Name(reason.type))})</span></li>'
        for split, _, reason in findings
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Ingest statistics</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Ingest statistics</h1>",
        f'<div class="meta">{_e(_source_line(source))}</div>',
        _table(["", *names], overview),
        f"<h2>Drift against train: {len(findings)} finding(s)</h2>",
        f"<ul>{drift}</ul>" if drift else '<p class="meta">None beyond the thresholds.</p>',
        *(_split_section(d, labels) for d in datasets),
        f'<p class="note">{_e(NOTE)} The same statistics in TensorFlow Data Validation\'s '
        "format: <code>statistics/Split-&lt;split&gt;/FeatureStats.pb</code>; the drift "
        "findings: <code>statistics/Split-&lt;split&gt;/SchemaDiff.pb</code> and "
        "<code>anomalies.pbtxt</code>.</p>",
        "</body></html>",
    ]
    return "".join(parts)


def facets_html(datasets: Sequence[statistics_pb2.DatasetFeatureStatistics]) -> str:
    """Facets Overview of `datasets`, side by side (the page loads Facets from a CDN)."""
    both = statistics_pb2.DatasetFeatureStatisticsList(datasets=list(datasets))
    proto = base64.b64encode(both.SerializeToString()).decode("ascii")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<title>Facets Overview: ingest splits</title>"
        f'<script src="{FACETS_SCRIPT}"></script>'
        f'<link rel="import" href="{FACETS_IMPORT}"></head><body>'
        '<facets-overview id="overview"></facets-overview>'
        f'<script>document.getElementById("overview").protoInput = "{proto}";</script>'
        "</body></html>"
    )
