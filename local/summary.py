"""The end-of-run summary of a local run, from what the steps wrote themselves.

The ingest counts' own summary (`IngestCounts.summary`, the lines ingest logs), the drift
findings of its statistics, the evaluation report's verdict, metrics and paired tests
(`components.evaluate.report_text.summary_text`, sections of the text report the evaluate
step prints), then where things are: the report as a file:// URL, the step logs, the pushed
version, and the commands to serve it and query it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from components.evaluate.report import REPORT_FILE, EvaluationReport
from components.evaluate.report_text import summary_text
from components.ingest import statistics
from components.ingest.counts import IngestCounts
from contract import layout
from contract import schema as S

# Candidates of one test query written beside the run, for the query command.
EXAMPLE_PRODUCTS = "example_products.jsonl"
EXAMPLE_CANDIDATES = 10
REPORT_HTML = "report.html"
SERVER_PORT = 8500
REST_PORT = 8501


def _indent(text: str, by: str = "  ") -> list[str]:
    return [by + line if line else line for line in text.splitlines()]


def example_products(examples_dir: str, path: str) -> tuple[str, int] | None:
    """Write the candidates of the first query of the test split, one JSON object each (the
    format of `serving.client --products`). Returns (query, candidates), or None when the
    split is empty."""
    from components import raw_splits
    from serving.signatures import PRODUCT_FIELDS

    schema = S.RawSchema.load(os.path.join(examples_dir, layout.SCHEMA_FILE))
    query, rows = None, []
    for batch in raw_splits.read_batches(raw_splits.shards(examples_dir, "test")):
        names = [n for n in (S.PRODUCT_ID, *PRODUCT_FIELDS) if n in batch.schema.names]
        for record in batch.to_pylist():
            if query is not None and record[S.QUERY] != query:
                break
            query = record[S.QUERY]
            row = {name: record[name] for name in (*names, *schema.feature_names)}
            rows.append(
                {k: ("" if v is None and k in PRODUCT_FIELDS else v) for k, v in row.items()}
            )
            if len(rows) == EXAMPLE_CANDIDATES:
                break
        else:
            continue
        break
    if not rows:
        return None
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return query, len(rows)


def format_summary(
    outputs: Mapping[str, str],
    run_dir: str,
    model_base: str,
    model_name: str,
    new_versions: list[str],
    seconds: float,
    python: str = ".venv/bin/python",
) -> str:
    """`outputs`: the pipeline's output artifact paths (examples, metrics, blessing, report)."""
    examples = outputs["examples"]
    counts = IngestCounts.from_json(Path(examples, layout.COUNTS_FILE).read_text("utf-8"))
    drift = statistics.load(examples)["drift"]
    lines = [f"MLPR pipeline finished in {seconds:.0f} s", "", "Ingest:"]
    lines += _indent(counts.summary())
    lines.append(
        f"  statistics: {os.path.join(examples, statistics.REPORT_FILE)}; "
        f"drift against train: {len(drift)} finding(s)"
    )
    lines += [f"    {d['message']}" for d in drift[:5]]
    report = EvaluationReport.read(os.path.join(outputs["blessing"], REPORT_FILE))
    lines += ["", *summary_text(report).splitlines()]
    # The HTML artifact has no extension; a copy that a browser opens as a page.
    html = os.path.join(run_dir, REPORT_HTML)
    shutil.copyfile(outputs["report"], html)
    lines += [
        "",
        f"Report: {Path(html).resolve().as_uri()}",
        f"  as text: {python} -m components.evaluate report {shlex.quote(run_dir)}",
        f"Step logs: {os.path.join(run_dir, 'logs')}/",
    ]
    if not new_versions:
        lines.append("Pushed: nothing (the model was not blessed)")
        return "\n".join(lines)
    for version in new_versions:
        lines.append(f"Pushed: {os.path.join(model_base, model_name, version)}")
    from serving.tfs_config import CONFIG_DIR, MODELS_CONFIG

    config = os.path.join(model_base, CONFIG_DIR, MODELS_CONFIG)
    lines.append(f"TF Serving config: {config} (with batching.config, monitoring.config)")
    serve = (
        f"{python} -m serving.server --model-base {shlex.quote(model_base)} "
        f"--model-name {shlex.quote(model_name)} --port {SERVER_PORT} --rest-port {REST_PORT}"
    )
    lines += ["", "Serve it (gRPC and REST, TF Serving's API):", f"  {serve}"]
    products = os.path.join(run_dir, EXAMPLE_PRODUCTS)
    example = example_products(examples, products)
    if example is not None:
        query, n = example
        lines += [
            f"Query it, from another terminal ({n} candidates of a test query):",
            f"  {python} -m serving.client --target 127.0.0.1:{SERVER_PORT} "
            f"--model-name {shlex.quote(model_name)} --query {shlex.quote(query)} "
            f"--products {shlex.quote(products)}",
        ]
    return "\n".join(lines)
