"""The ingest command line: counts on success, a one-line error and status 2 on bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from ingest_testlib import HEADER, good_row, write_bad_csv

from components import layout, schema
from components.ingest.__main__ import main


def test_missing_column_exits_2_with_one_line(tmp_path):
    source = tmp_path / "no_clicks.csv"
    header = [c for c in HEADER if c != schema.CLICKS]
    with source.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, [good_row()[c] for c in header]])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "components.ingest",
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: CSV header of {source} is missing required column(s): clicks"
    ]
    assert result.stdout == ""


def test_bad_schema_file_exits_2(tmp_path):
    bad = tmp_path / "schema.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(
        main, ["--input", "x.csv", "--output", str(tmp_path), "--schema", str(bad)]
    )
    assert result.exit_code == 2
    assert result.output.startswith(
        f"error: cannot load the schema {bad}: schema file {bad} is not valid JSON"
    )


def test_success_prints_counts_and_first_dead_letters(tmp_path):
    source = write_bad_csv(tmp_path / "bad.csv")
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(schema.DEMO_SCHEMA.to_json())
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "--input",
            str(source),
            "--output",
            str(out),
            "--schema",
            str(schema_file),
            "--funnel-policy",
            "clip",
            "--max-bad-share",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "read 14 rows: kept 5, filtered (impressions <= 5) 2, dead-lettered 7"
    assert "funnel clipped: 1" in lines
    assert "  [not_an_integer] row 6 of bad.csv: field 'clicks' is not an integer: 'abc'" in lines
    assert Path(out / layout.COUNTS_FILE).exists()


def test_too_many_bad_rows_stop_with_a_summary(tmp_path):
    source = write_bad_csv(tmp_path / "bad.csv")
    out = tmp_path / "out"
    args = ["--input", str(source), "--output", str(out), "--funnel-policy", "clip"]
    result = CliRunner().invoke(main, [*args, "--max-bad-share", "0.49"])
    assert result.exit_code == 2
    assert "7 of 14 rows (50.0%) could not be used, more than max_bad_share 49.0%" in result.output
    assert "By reason: missing_value 2, " in result.output
    assert "e.g. row 6 of bad.csv: field 'clicks' is not an integer: 'abc'" in result.output
    # Nothing is lost: the dead letters and the counts are written before the stop.
    counts = json.loads((out / layout.COUNTS_FILE).read_text())
    assert counts["rows_dead_letter"] == 7
    assert len(list((out / layout.DEAD_LETTER_DIR).glob("*.jsonl"))) >= 1
    # The default (10%) stops this file too.
    assert CliRunner().invoke(main, args).exit_code == 2
