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

from components.ingest.__main__ import main
from contract import layout
from contract import schema as S


def test_missing_column_exits_2_with_one_line(tmp_path):
    source = tmp_path / "no_clicks.csv"
    header = [c for c in HEADER if c != S.CLICKS]
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
    schema_file.write_text(S.DEMO_SCHEMA.to_json())
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


def _demo_log(rows: int = 120):
    from components.ingest import demo_data

    return demo_data.generate(10, seed=0).head(rows)


def _ingest_subprocess(source: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "components.ingest", "--input", str(source), "--output", str(out)],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONWARNINGS": "ignore"},
        timeout=300,
    )


def _stderr_lines(result) -> list[str]:
    # TensorFlow's C++ start-up lines (I0000/W0000 ...) are not the command's own output.
    return [
        line
        for line in result.stderr.strip().splitlines()
        if not line.startswith(("I0000", "W0000", "WARNING: All log messages"))
    ]


def test_truncated_gzip_and_corrupt_parquet_stop_with_one_line_and_no_leftovers(tmp_path):
    """A file that breaks off mid-way cannot be dead-lettered row by row: the run stops with
    one line naming the file and the last row read, exit 2, no traceback, no beam-temp-*."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.ingest import demo_data

    log = _demo_log()
    text = tmp_path / "log.csv"
    demo_data.write(log, str(text))
    packed = gzip.compress(text.read_bytes())
    truncated = tmp_path / "log.csv.gz"
    truncated.write_bytes(packed[: len(packed) // 2])

    corrupt = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_pandas(log), corrupt, row_group_size=40, compression="snappy")
    data = bytearray(corrupt.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    corrupt.write_bytes(bytes(data))

    for source, cause in ((truncated, "EOFError"), (corrupt, "")):
        out = tmp_path / f"out_{source.suffix}"
        result = _ingest_subprocess(source, out)
        assert result.returncode == 2, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        lines = _stderr_lines(result)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"error: cannot read {source} ")
        assert cause in lines[0] and "truncated or corrupt" in lines[0]
        assert not list(out.glob("beam-temp-*"))


def test_repeated_input_reads_every_file_once(tmp_path):
    """--input may be repeated (each a path or glob); a file matched twice is read once."""
    from components.ingest import demo_data

    log = _demo_log()
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    demo_data.write(log.iloc[:70], str(first))
    demo_data.write(log.iloc[70:], str(second))
    out = tmp_path / "out"
    args = ["--input", str(first), "--input", str(second), "--input", str(tmp_path / "*.csv")]
    result = CliRunner().invoke(main, [*args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith(f"read {len(log)} rows: ")
    counts = json.loads((out / layout.COUNTS_FILE).read_text())
    assert counts["rows_read"] == len(log)


def test_export_writes_the_splits_as_tfrecords(tmp_path):
    import tensorflow as tf

    from components.ingest.export import main as export
    from components.ingest.job import run_ingest
    from contract.features import raw_feature_spec

    source = tmp_path / "log.csv"
    with source.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, HEADER)
        writer.writeheader()
        writer.writerows(good_row(query=f"query {i}", product_id=f"p{i}") for i in range(40))
    run_ingest(str(source), str(tmp_path / "out"), S.DEMO_SCHEMA)
    result = CliRunner().invoke(
        export, ["--examples", str(tmp_path / "out"), "--output", str(tmp_path / "tfr")]
    )
    assert result.exit_code == 0, result.output
    spec = raw_feature_spec(S.DEMO_SCHEMA)
    queries = []
    for split in S.SPLITS:
        files = sorted(tf.io.gfile.glob(layout.split_pattern(str(tmp_path / "tfr"), split)))
        assert [os.path.basename(f) for f in files] == [
            f"data-00000-of-00001{layout.RECORD_SUFFIX}"
        ]
        for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100):
            queries += [q.decode() for q in tf.io.parse_example(batch, spec)[S.QUERY].numpy()]
    assert sorted(queries) == sorted(f"query {i}" for i in range(40))
    missing = CliRunner().invoke(
        export, ["--examples", str(tmp_path / "nothing"), "--output", str(tmp_path / "x")]
    )
    assert missing.exit_code == 2 and "no train split in" in missing.output
