"""The evaluation report as one self-contained HTML page (plots embedded as base64 PNG).

It is what the Kubeflow UI shows for the evaluate step's `report` output: the verdict and
why, the candidate beside the champion, the paired per-query test, then the plots.
"""

from __future__ import annotations

from components.evaluate import plots
from components.evaluate.analysis import CONFUSION_CATEGORIES, GROUP_PERCENTILES, THRESHOLD_RULE
from components.evaluate.report import (
    EvaluationReport,
    fmt,
    impression_group_rows,
    market_group_rows,
    paired_verdict,
    reference_rows,
    signed,
    verdict_title,
)
from components.html_table import escape as _e
from components.html_table import table as _table

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px;
       color: #1d1d1f; max-width: 1280px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #d0d4da; padding: 4px 8px; text-align: right; }
th { background: #f2f4f7; } td.text, th.text { text-align: left; }
.meta { color: #555; font-size: 13px; } .meta code { font-size: 12px; }
.verdict { padding: 10px 14px; border-radius: 6px; font-weight: 600; margin: 12px 0 4px; }
.blessed { background: #e3f4e6; border: 1px solid #6cbf7a; }
.refused { background: #fbe5e3; border: 1px solid #d9776c; }
.forced { background: #fff3d6; border: 1px solid #e0b04a; }
.pass { color: #1d7a33; font-weight: 600; } .fail { color: #b3261e; font-weight: 600; }
.warn { color: #9a6a00; font-weight: 600; }
.better { color: #1d7a33; } .worse { color: #b3261e; }
.note { color: #555; font-size: 12px; max-width: 1100px; }
img { max-width: 100%; border: 1px solid #e3e6ea; }
ul { font-size: 14px; margin-top: 4px; }
"""


def _difference(value: float) -> str:
    text = signed(value)
    css = "" if text == "n/a" or value == 0 else ("better" if value > 0 else "worse")
    return f'<span class="{css}">{_e(text)}</span>' if css else _e(text)


def _header(report: EvaluationReport) -> str:
    m = report.candidate_metrics
    champion = report.champion_uri or "none: first run, nothing is served yet"
    return (
        "<h1>MLPR evaluation report</h1>"
        '<div class="meta">'
        f"Candidate <code>{_e(report.candidate_uri)}</code><br>"
        f"Champion (model in production) <code>{_e(champion)}</code><br>"
        f"Test split <code>{_e(report.split)}</code>: {_e(m.get('examples', 'n/a'))} pairs, "
        f"{_e(m.get('queries', 'n/a'))} queries</div>"
    )


def _verdict(report: EvaluationReport) -> str:
    blessing = report.blessing
    css = "forced" if blessing.get("forced") else "blessed" if blessing["blessed"] else "refused"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in blessing["reasons"])
    return f'<div class="verdict {css}">{_e(verdict_title(blessing))}</div><ul>{reasons}</ul>'


def _checks(report: EvaluationReport) -> str:
    rows = [
        [
            f'<span class="{c["outcome"]}">{_e(c["outcome"])}</span>',
            _e(c["check"]),
            _e(c["metric"]),
            _e(fmt(c["value"])),
            _e(fmt(c["threshold"])),
            _e(c["reason"]),
        ]
        for c in report.blessing["checks"]
    ]
    header = ["outcome", "check", "metric", "value", "threshold", "reason"]
    return "<h2>Gate checks</h2>" + _table(header, rows, text_columns=(0, 1, 2, 5))


def _side_by_side(report: EvaluationReport) -> str:
    has_champion = report.champion_metrics is not None
    header = ["task", "metric", "candidate"] + (["champion", "difference"] if has_champion else [])
    rows = []
    for task, metric in report.headline_rows():
        key = f"{task}/{metric}"
        candidate = report.metric("candidate", key)
        row = [_e(task), _e(metric), _e(fmt(candidate))]
        if has_champion:
            champion = report.metric("champion", key)
            row += [_e(fmt(champion)), _difference(candidate - champion)]
        rows.append(row)
    title = "Candidate vs champion" if has_champion else "Candidate (no champion yet)"
    return f"<h2>{title} on the test split</h2>" + _table(header, rows, text_columns=(0, 1))


def _paired(report: EvaluationReport) -> str:
    title = "<h2>Paired NDCG@5 per query (candidate &minus; champion)</h2>"
    if not report.paired:
        return title + '<p class="note">No champion: nothing to compare with.</p>'
    rows = []
    for task in report.tasks:
        p = report.paired.get(task)
        if p is None:
            rows.append([_e(task), "n/a", "n/a", "n/a", "n/a", _e(paired_verdict(None))])
            continue
        interval = f"[{signed(p['ci_low'])}, {signed(p['ci_high'])}]"
        p_value = "n/a" if p["p_value"] is None else f"{p['p_value']:.4g}"
        rows.append(
            [
                _e(task),
                _e(p["queries"]),
                _difference(p["mean_difference"] if p["mean_difference"] is not None else 0.0),
                _e(interval),
                _e(p_value),
                _e(paired_verdict(p)),
            ]
        )
    level = next((p["confidence"] for p in report.paired.values() if p), 0.95)
    note = (
        '<p class="note">Per test query with a positive label for the task, NDCG@5 of the '
        f"candidate minus that of the champion; mean, {level:.0%} confidence interval (Student t) "
        "and two-sided p-value of the paired t-test over queries.</p>"
    )
    header = ["task", "queries", "mean difference", f"{level:.0%} CI", "p-value", "verdict"]
    return title + _table(header, rows, text_columns=(0, 5)) + note


def _references(report: EvaluationReport) -> str:
    mode = report.blessing.get("settings", {}).get("reference_check")
    scored = report.reference_metrics or report.reference_notes
    if mode is None or (mode != "off" and not scored):  # written before them, or none scored
        return ""
    title = "<h2>No-training references (NDCG@5)</h2>"
    notes = "".join(f'<p class="note">{_e(n)}.</p>' for n in report.reference_notes)
    if mode == "off":
        return title + '<p class="note">reference_check is off: no references scored.</p>'
    header, plain = reference_rows(report)
    if not plain:
        return title + notes
    rows = []
    for row in plain:
        cells = [_e(cell) for cell in row]
        cells[-1] = f'<span class="{_e(row[-1])}">{_e(row[-1])}</span>'
        rows.append(cells)
    alpha = report.blessing.get("settings", {}).get("reference_alpha", 0.05)
    note = (
        '<p class="note">What a shop gets without training: each reference ranks every '
        "query's products by one score (BM25 of the query against the title, the zero-shot "
        "cosine of the candidate's text encoder before training, a relevance-score feature "
        "of the schema). Per task, the candidate against the reference with the best NDCG@5: "
        "mean per-query difference over the test queries with a positive label and the "
        f"one-sided paired t-test of &quot;the candidate is below it&quot;; the check fails "
        f"at p &lt; {_e(alpha)} (reference_check {_e(mode)}).</p>"
    )
    text_columns = (0, len(header) - 5, len(header) - 1)
    return title + _table(header, rows, text_columns=text_columns) + note + notes


def _confusion(report: EvaluationReport) -> str:
    negative, positive = CONFUSION_CATEGORIES
    rows = []
    for task in report.tasks:
        c = report.candidate.tasks[task].confusion
        if c is None:
            rows.append([_e(task), "n/a", "n/a", "n/a", "n/a", "n/a"])
            continue
        (tn, fp), (fn, tp) = c.matrix
        rows.append([_e(task), _e(fmt(c.threshold)), *(_e(v) for v in (tn, fp, fn, tp))])
    header = [
        "task",
        "threshold",
        f"actual {negative}, predicted {negative}",
        f"actual {negative}, predicted {positive}",
        f"actual {positive}, predicted {negative}",
        f"actual {positive}, predicted {positive}",
    ]
    note = (
        f'<p class="note">Threshold: the one that {THRESHOLD_RULE} (a pair is predicted '
        "positive when its probability is at least the threshold). It describes the split; it "
        "is not a serving threshold.</p>"
    )
    return "<h2>Confusion matrices of the candidate</h2>" + _table(header, rows) + note


def _groups(report: EvaluationReport) -> str:
    keys, plain = impression_group_rows(report, dash="\u2013")
    rows = [[_e(cell) for cell in row] for row in plain]
    champion = report.champion is not None and bool(report.champion.impression_groups)
    low, high = GROUP_PERCENTILES
    note = (
        f'<p class="note">Test pairs grouped by their impressions at the {low}th and {high}th '
        "percentiles; NDCG@5 ranks each query's products within the group"
        + ("; the champion's value in brackets." if champion else ".")
        + "</p>"
    )
    header = ["group", "impressions", "pairs", "queries", *keys]
    return "<h2>Metrics by impression-count group</h2>" + _table(header, rows) + note


def _markets(report: EvaluationReport) -> str:
    keys, plain = market_group_rows(report)
    if not plain:
        return ""
    rows = [[_e(cell) for cell in row] for row in plain]
    champion = report.champion is not None and bool(report.champion.market_groups)
    note = (
        '<p class="note">Test pairs grouped by market; NDCG@5 ranks each query\'s products'
        + ("; the champion's value in brackets." if champion else ".")
        + "</p>"
    )
    return "<h2>Metrics by market</h2>" + _table(["market", "pairs", "queries", *keys], rows) + note


def _plot(title: str, png: str, note: str) -> str:
    return (
        f"<h2>{_e(title)}</h2>"
        f'<img alt="{_e(title)}" src="data:image/png;base64,{png}">'
        f'<p class="note">{_e(note)}</p>'
    )


def render_html(report: EvaluationReport) -> str:
    body = [
        _header(report),
        _verdict(report),
        _side_by_side(report),
        _paired(report),
        _references(report),
        _checks(report),
        _plot(
            "ROC per task",
            plots.roc_figure(report),
            "True against false positive rate over every threshold of the task's probability; "
            "candidate solid, champion dashed.",
        ),
        _plot(
            "NDCG@k per task",
            plots.ndcg_figure(report),
            "Mean NDCG@k over the test queries with a positive label, k = 1..10.",
        ),
        _plot(
            "Calibration per task",
            plots.calibration_figure(report),
            "Ten equal-count bins of the predicted probability: mean prediction against what "
            "it predicts, observed. A model trained on rates (the default) predicts each "
            "task's count per impression: a bin's observed value is its engagements over its "
            "impressions, and its mean prediction is weighted by impressions. On the grey "
            "line (y = x) a model is calibrated; the ECE in the metrics is the impression-"
            "weighted mean distance from it. The axes zoom to the predictions, which may span "
            "a narrow range.",
        ),
        _confusion(report),
        _groups(report),
        _markets(report),
        _plot(
            "AUC and NDCG@5 by impression group",
            plots.impression_figure(report),
            "Solid bars AUC, light hatched bars NDCG@5; candidate blue, champion orange.",
        ),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>MLPR evaluation report</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
