"""Rows per second of ingest's JSONL reading and checking: pyarrow's JSON reader in blocks
against the row reader (`json.loads` line by line), in the same run on the same file.

    .venv/bin/python benchmarks/ingest_jsonl_read.py --rows 200000

The file is the synthetic valid log of `ingest_throughput.write_log` (about 20 products per
query, every column of the demo schema) written as JSON lines by pandas (not timed). Each
path runs what the ingest job runs per file, in this process, without Beam: `blocks.read_blocks`
(with the schema: the block path; without it: the row reader alone, as JSONL was read before)
and `columnar.check_block` on each block. It prints seconds and rows per second of reading
alone and of reading + checking, and the ratio of the two paths.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import click
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ingest_throughput import write_log  # noqa: E402
from reports import print_and_save  # noqa: E402

from components.ingest import blocks, columnar  # noqa: E402
from contract import schema as S  # noqa: E402


def write_jsonl(path: str, rows: int) -> None:
    """The benchmark's log of `rows` rows as JSON lines (numbers typed, one object a line)."""
    csv_path = path + ".csv"
    write_log(csv_path, rows)
    frame = pd.read_csv(csv_path, keep_default_na=False, dtype={S.PRODUCT_ID: str})
    frame.to_json(path, orient="records", lines=True, force_ascii=False)
    os.remove(csv_path)


def _timed(path: str, schema: S.RawSchema | None, check: bool) -> tuple[float, int, int]:
    """(seconds, rows, rows read by pyarrow) of reading the file (and checking its blocks)."""
    start = time.perf_counter()
    rows = by_pyarrow = 0
    for block in blocks.read_blocks(path, "jsonl", "utf-8", schema=schema):
        rows += len(block)
        by_pyarrow += len(block) if block.table is not None else 0
        if check:
            outcome = columnar.check_block(block, S.DEMO_SCHEMA, "utf-8", "reject", {}, [])
            assert not outcome.dead_letters, outcome.dead_letters[:1]
    return time.perf_counter() - start, rows, by_pyarrow


@click.command()
@click.option("--rows", default=200_000, show_default=True, help="Rows of the JSONL log.")
@click.option("--out", default=None, help="Also write the report (Markdown) here.")
def main(rows: int, out: str | None) -> None:
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "log.jsonl")
        write_jsonl(path, rows)
        size = os.path.getsize(path)
        results = {}
        for step, check in (("read", False), ("read + check", True)):
            for name, schema in (("row reader", None), ("pyarrow blocks", S.DEMO_SCHEMA)):
                results[step, name] = _timed(path, schema, check)
    lines = [
        f"# JSONL read and check, {rows:,} rows ({size / 2**20:.0f} MiB), {os.cpu_count()} CPUs",
        "",
        f"    .venv/bin/python benchmarks/ingest_jsonl_read.py --rows {rows}",
        "",
        "| step | path | seconds | rows/s | rows read by pyarrow |",
        "|---|---|---|---|---|",
    ]
    for (step, name), (seconds, count, by_pyarrow) in results.items():
        assert count == rows, (step, name, count)
        lines.append(
            f"| {step} | {name} | {seconds:.2f} | {count / seconds:,.0f} | {by_pyarrow:,} |"
        )
    lines += [
        "",
        "Ratios in this run (rows per second of pyarrow blocks over the row reader's):",
        "",
    ]
    for step in ("read", "read + check"):
        ratio = results[step, "row reader"][0] / results[step, "pyarrow blocks"][0]
        lines.append(f"- {step}: {ratio:.1f}x")
    print_and_save("\n".join(lines) + "\n", out)


if __name__ == "__main__":
    main()
