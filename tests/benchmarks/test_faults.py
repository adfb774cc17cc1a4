"""The fault catalogue (benchmarks/faults.py): what its watcher counts as a partial version or a
doubled row, and (large) a few of its faults run end to end through the local runner."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest

_BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
_spec = importlib.util.spec_from_file_location("faults", os.path.join(_BENCHMARKS, "faults.py"))
faults = importlib.util.module_from_spec(_spec)
sys.modules["faults"] = faults  # its dataclasses look their module up
_spec.loader.exec_module(faults)


def _look(tmp_path, model_root):
    return faults.Look(time.monotonic(), None, {}, str(model_root), str(tmp_path / "none"))


def test_a_version_without_its_variables_is_seen_as_partial(tmp_path):
    root = tmp_path / "serving" / "mlpr"
    (root / "1" / "variables").mkdir(parents=True)
    (root / "1" / "saved_model.pb").write_bytes(b"graph")
    (root / "1" / "variables" / "variables.index").write_bytes(b"index")
    (root / "2").mkdir()
    (root / "2" / "saved_model.pb").write_bytes(b"graph")  # no variables yet
    (root / ".tmp-3").mkdir()  # staging: never a version
    watch = faults.Watch()
    watch.note(_look(tmp_path, root))
    assert watch.versions == {"1": True, "2": False}
    # Completed later, it stays counted as seen partial once.
    (root / "2" / "variables").mkdir()
    (root / "2" / "variables" / "variables.index").write_bytes(b"index")
    watch.note(_look(tmp_path, root))
    assert watch.versions == {"1": True, "2": False}


def test_each_attempt_of_a_step_is_a_process_of_its_own(tmp_path):
    watch = faults.Watch()
    for now, pid in ((1.0, 10), (3.0, 10), (40.0, 11), (45.0, 11)):
        watch.note(faults.Look(now, None, {"train": pid}, str(tmp_path), ""))
    assert watch.attempts["train"] == [[10, 1.0, 3.0], [11, 40.0, 45.0]]
    assert watch.seconds("train") == 7.0  # the wait between the attempts left out
    assert watch.started("train") == 40.0


def test_lost_and_doubled_rows_are_counted_against_the_reference(tmp_path, monkeypatch):
    reference = {
        "counts": {"rows_read": 4},
        "pairs": {
            "train": Counter({("q", "a"): 1, ("q", "b"): 1}),
            "eval": Counter(),
            "test": Counter(),
        },
        "dead_letter": Counter({(3, "not_a_number", "m"): 1}),
        "metrics": {"candidate": {"click/auc": 0.75}},
    }
    got = {
        "counts": {"rows_read": 4},
        "pairs": {
            "train": Counter({("q", "a"): 2}),  # b lost, a twice
            "eval": Counter({("q", "b"): 1}),  # b in another split: doubled there, lost here
            "test": Counter(),
        },
        "dead_letter": Counter({(3, "not_a_number", "m"): 1}),
        "metrics": {"candidate": {"click/auc": 0.7501}},
    }
    monkeypatch.setattr(faults, "read_run", lambda root: got)
    model_root = tmp_path / "mlpr"
    (model_root / "1").mkdir(parents=True)
    outcome = faults.compare(reference, "", str(model_root), faults.Watch(), "")
    assert (outcome.rows_lost, outcome.rows_doubled) == (1, 2)
    assert outcome.counts_equal and outcome.dead_letter_equal
    assert not outcome.metrics_equal and outcome.metric_max_diff == pytest.approx(1e-4)
    assert not outcome.ok()


def test_the_planted_bad_rows_sit_inside_the_demo_log(tmp_path):
    path = tmp_path / "log.csv"
    rows = faults.write_input(str(path), queries=3)
    lines = path.read_text().splitlines()
    assert len(lines) - 1 == rows
    for bad in faults.BAD_ROWS:
        assert 1 < lines.index(bad) < len(lines) - 1


@pytest.mark.large  # three local pipeline runs and two retried faults: about 8 minutes
def test_a_step_killed_while_writing_or_exporting_is_retried_to_the_same_result(tmp_path):
    out = tmp_path / "faults.md"
    done = subprocess.run(
        [
            sys.executable, os.path.join(_BENCHMARKS, "faults.py"),
            "--faults", "ingest-writing,train-export", "--encoder", "tiny", "--queries", "60",
            "--out", str(out), "--work", str(tmp_path / "work"),
        ],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = {r["fault"]: r for r in json.loads(out.with_suffix(".json").read_text())["runs"]}
    assert runs["control"]["metrics_equal"]  # training repeats to the bit: equality is asked
    for name in ("ingest-writing", "train-export"):
        run = runs[name]
        assert run["injected"] and run["attempts"] == 2 and run["survived"], run
        assert (run["rows_lost"], run["rows_doubled"], run["versions"]) == (0, 0, ["1"])
        assert run["metrics_equal"] and run["dead_letter_equal"]
    # Killed after its last epoch, the retry resumed there: no epoch trained twice.
    assert runs["train-export"]["resumed_after"] is not None
    assert "Survived: 2 of 2 faults" in out.read_text()
