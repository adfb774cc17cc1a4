"""The evaluation report as plain text, section by section as in the HTML page (without plots)."""

from __future__ import annotations

from components.evaluate.analysis import (
    CONFUSION_CATEGORIES,
    NDCG_CURVE_KS,
    THRESHOLD_RULE,
    expected_calibration_error,
)
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


def _is_number(cell: str) -> bool:
    try:
        float(cell.split(" ")[0])
    except ValueError:
        return cell == "n/a"
    return True


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Columns of numbers are right-aligned, the others left-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(header))]
    line = "  ".join(
        f"{{:>{w}}}" if number else f"{{:<{w}}}" for w, number in zip(widths, numeric, strict=True)
    )
    return [indent + line.format(*row).rstrip() for row in [header, *rows]]


def _header(report: EvaluationReport) -> list[str]:
    m = report.candidate_metrics
    return [
        "MLPR evaluation report",
        f"  test split: {report.split}",
        f"  candidate:  {report.candidate_uri}",
        f"  champion:   {report.champion_uri or 'none (first run: nothing is served yet)'}",
        f"  pairs {m.get('examples', 'n/a')}, queries {m.get('queries', 'n/a')}",
    ]


def _verdict(report: EvaluationReport) -> list[str]:
    blessing = report.blessing
    lines = [f"Verdict: {verdict_title(blessing)}"]
    lines += [f"  - {reason}" for reason in blessing["reasons"]]
    return lines


def _checks(report: EvaluationReport) -> list[str]:
    rows = [
        [c["outcome"], c["check"], c["metric"], fmt(c["value"]), fmt(c["threshold"])]
        for c in report.blessing["checks"]
    ]
    lines = ["Gate checks (every check, with its value and threshold)"]
    return lines + _table(["outcome", "check", "metric", "value", "threshold"], rows)


def _side_by_side(report: EvaluationReport) -> list[str]:
    has_champion = report.champion_metrics is not None
    rows = []
    for task, metric in report.headline_rows():
        key = f"{task}/{metric}"
        candidate = report.metric("candidate", key)
        row = [task, metric, fmt(candidate)]
        if has_champion:
            champion = report.metric("champion", key)
            row += [fmt(champion), signed(candidate - champion)]
        rows.append(row)
    header = ["task", "metric", "candidate"] + (["champion", "difference"] if has_champion else [])
    title = (
        "Candidate vs champion on the test split" if has_champion else "Candidate on the test split"
    )
    return [title, *_table(header, rows)]


def _paired(report: EvaluationReport) -> list[str]:
    title = "Paired NDCG@5 per query (candidate - champion, queries with a positive label)"
    if not report.paired:
        return [title, "  no champion: nothing to compare with"]
    rows = []
    for task in report.tasks:
        p = report.paired.get(task)
        if p is None:
            rows.append([task, "n/a", "n/a", "n/a", "n/a", paired_verdict(None)])
            continue
        level = f"{p['confidence']:.0%}"
        interval = f"{level} [{signed(p['ci_low'])}, {signed(p['ci_high'])}]"
        p_value = "n/a" if p["p_value"] is None else f"{p['p_value']:.4g}"
        rows.append(
            [
                task,
                str(p["queries"]),
                signed(p["mean_difference"]),
                interval,
                p_value,
                paired_verdict(p),
            ]
        )
    return [title, *_table(["task", "queries", "mean diff", "CI", "p-value", "verdict"], rows)]


def _references(report: EvaluationReport) -> list[str]:
    mode = report.blessing.get("settings", {}).get("reference_check")
    scored = report.reference_metrics or report.reference_notes
    if mode is None or (mode != "off" and not scored):  # written before them, or none scored
        return []
    title = (
        "No-training references: NDCG@5 per task; the candidate - the best reference, paired "
        "over queries, one-sided p"
    )
    header, rows = reference_rows(report)
    lines = [title]
    if mode == "off":
        lines.append("  reference_check is off: no references scored")
    elif rows:
        lines += _table(header, rows)
    lines += [f"  ({note})" for note in report.reference_notes]
    return lines


def _confusion(report: EvaluationReport) -> list[str]:
    negative, positive = CONFUSION_CATEGORIES
    rows = []
    for task in report.tasks:
        c = report.candidate.tasks[task].confusion
        if c is None:
            rows.append([task, "n/a", "n/a", "n/a", "n/a", "n/a"])
            continue
        (tn, fp), (fn, tp) = c.matrix
        rows.append([task, fmt(c.threshold), str(tn), str(fp), str(fn), str(tp)])
    title = f"Confusion matrices of the candidate (threshold: the one that {THRESHOLD_RULE})"
    header = ["task", "threshold", f"TN ({negative})", "FP", "FN", f"TP ({positive})"]
    return [title, *_table(header, rows)]


def _ndcg_curves(report: EvaluationReport) -> list[str]:
    rows = []
    for task in report.tasks:
        rows.append(
            [task, "candidate", *(fmt(v, 3) for v in report.candidate.tasks[task].ndcg_curve)]
        )
        if report.champion is not None:
            rows.append(
                ["", "champion", *(fmt(v, 3) for v in report.champion.tasks[task].ndcg_curve)]
            )
    header = ["task", "model", *(f"@{k}" for k in NDCG_CURVE_KS)]
    return ["NDCG@k, k = 1..10", *_table(header, rows)]


def _calibration(report: EvaluationReport) -> list[str]:
    lines = [
        "Calibration of the candidate: mean predicted -> observed, by decile of the prediction "
        "(ECE: the bins' mean distance)"
    ]
    width = max(9, *(len(task) for task in report.tasks))
    for task in report.tasks:
        analysis = report.candidate.tasks[task]
        cells = ", ".join(
            f"{b.mean_predicted:.3f}->{b.observed_rate:.3f}" for b in analysis.calibration
        )
        ece = expected_calibration_error(analysis.calibration)
        lines.append(
            f"  {task:<{width}} {analysis.calibration_target}; ECE {ece:.4f}: {cells}"
            if cells
            else f"  {task:<{width}} n/a"
        )
    return lines


def _groups(report: EvaluationReport) -> list[str]:
    keys, rows = impression_group_rows(report)
    champion = report.champion is not None and bool(report.champion.impression_groups)
    title = "Metrics by impression-count percentile group of the test pairs" + (
        " (champion in brackets)" if champion else ""
    )
    return [title, *_table(["group", "impressions", "pairs", "queries", *keys], rows)]


def _markets(report: EvaluationReport) -> list[str]:
    keys, rows = market_group_rows(report)
    if not rows:
        return []
    champion = report.champion is not None and bool(report.champion.market_groups)
    title = "Metrics by market of the test pairs" + (" (champion in brackets)" if champion else "")
    return [title, *_table(["market", "pairs", "queries", *keys], rows)]


def render_text(report: EvaluationReport) -> str:
    sections = [
        _header(report),
        _verdict(report),
        _checks(report),
        _side_by_side(report),
        _paired(report),
        _references(report),
        _confusion(report),
        _ndcg_curves(report),
        _calibration(report),
        _groups(report),
        _markets(report),
    ]
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"


def summary_text(report: EvaluationReport) -> str:
    """The verdict with its reasons, the metrics beside the champion's, the paired tests and
    the references: the sections of this report that a local run's summary shows."""
    sections = [_verdict(report), _side_by_side(report), _paired(report), _references(report)]
    return "\n\n".join("\n".join(section) for section in sections if section)
