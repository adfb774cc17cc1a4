"""`python -m components.evaluate report PATH`: which report PATH designates, and the output."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from evaluate_testlib import ranking_rows, scored_split, synthetic_report

from components.evaluate.cli import cli, find_report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


@pytest.fixture(scope="module")
def report():
    rows = ranking_rows(10, 5, seed=5)
    return synthetic_report(scored_split(rows, lambda x, d: x), None)


def write_run(root, run: str, report, mtime: float) -> str:
    """The files kfp.local leaves for a run's evaluate task under a pipeline root."""
    blessing = root / run / "evaluate" / "blessing"
    blessing.mkdir(parents=True)
    (root / run / "evaluate" / "executor_output.json").write_text("{}")
    (root / run / "ingest").mkdir()
    path = report.write(str(blessing))
    os.utime(path, (mtime, mtime))
    return path


def test_every_level_of_a_local_run_finds_its_report(tmp_path, report):
    older = write_run(tmp_path, "mlpr-ranking-2026-01-02-10-00-00-000001", report, 1_000)
    newer = write_run(tmp_path, "mlpr-ranking-2026-01-01-09-00-00-000001", report, 2_000)
    (tmp_path / "a-run-without-evaluate" / "ingest").mkdir(parents=True)
    # The pipeline root: the run whose report was written last.
    assert find_report(str(tmp_path)) == newer
    run = os.path.dirname(os.path.dirname(os.path.dirname(older)))
    assert find_report(run) == older
    assert find_report(os.path.join(run, "evaluate")) == older
    assert find_report(os.path.dirname(older)) == older
    assert find_report(older) == older


def test_nothing_to_find_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_report(str(tmp_path / "missing"))
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert f"error: no evaluation report under {tmp_path}: looked for report.json" in result.output


def test_prints_the_text_report_and_writes_the_html(tmp_path, report):
    write_run(tmp_path, "mlpr-ranking-1", report, 1_000)
    out = tmp_path / "pages" / "report.html"
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert "Verdict: BLESSED" in result.output
    assert "champion:   none (first run: nothing is served yet)" in result.output
    assert f"HTML report written to {out}" in result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("data:image/png;base64,") == 4


def test_runs_as_a_module(tmp_path, report):
    path = report.write(str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "components.evaluate", "report", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("MLPR evaluation report")
    assert f"(from {path})" in done.stderr
