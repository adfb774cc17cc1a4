"""Ingest on two local worker processes writes what it writes on one: the same split files,
counts.json, dead letters, statistics.json and TFDV statistics, byte for byte where the files
are the job's own (components/beam_runner.py).

The input is the pinned demo-shop input of test_ingest_golden.py (four CSV files, every kind
of dead letter), so both runs also match the pinned fingerprint. With two workers the files
are dealt out to both; a split's Parquet files are one per input file either way
(components/raw_splits.py), so they are the same files, byte for byte.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_ingest_golden import GOLDEN, fingerprint, write_inputs  # noqa: E402

from components.ingest import demo_data, errors  # noqa: E402
from components.ingest.job import run_ingest  # noqa: E402
from contract import layout  # noqa: E402
from contract import schema as S  # noqa: E402

SPLIT_FILES = sorted(
    f"{split}/data-{index:05d}-of-00004{layout.SPLIT_SUFFIX}"
    for split in S.SPLITS
    for index in range(3)  # the fourth file's rows are all dead letters or repeated pairs
)
WRITTEN = [
    *SPLIT_FILES,
    layout.COUNTS_FILE,
    layout.SCHEMA_FILE,
    "statistics.json",
    *(f"statistics/Split-{split}/FeatureStats.pb" for split in S.SPLITS),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("workers")
    inputs = write_inputs(root / "inputs")
    out = {}
    for name, args in (("one", ["--direct_num_workers=1"]), ("two", ["--direct_num_workers=2"])):
        out[name] = root / name
        run_ingest(str(inputs / "*.csv"), str(out[name]), S.DEMO_SCHEMA, beam_args=args)
    return out


def _split_files(output_dir: Path) -> list[str]:
    return sorted(
        str(p.relative_to(output_dir)) for p in output_dir.glob(f"*/data-*{layout.SPLIT_SUFFIX}")
    )


def test_two_workers_write_the_same_split_files(runs):
    assert _split_files(runs["one"]) == _split_files(runs["two"]) == SPLIT_FILES
    one, two = fingerprint(runs["one"]), fingerprint(runs["two"])
    assert two == one
    assert one == json.loads(GOLDEN.read_text())


def test_two_workers_write_the_same_counts_and_statistics(runs):
    for name in WRITTEN:
        assert (runs["two"] / name).read_bytes() == (runs["one"] / name).read_bytes(), name


def test_a_small_input_runs_in_one_process_by_default(runs, tmp_path, monkeypatch):
    from components.ingest import job

    picked = []
    real = job.make_pipeline
    monkeypatch.setattr(job, "make_pipeline", lambda args, n: picked.append(n) or real(args, n))
    inputs = runs["one"].parent / "inputs"
    run_ingest(str(inputs / "*.csv"), str(tmp_path / "default"), S.DEMO_SCHEMA)
    assert picked == [1]
    for name in SPLIT_FILES:
        assert (tmp_path / "default" / name).read_bytes() == (runs["one"] / name).read_bytes()


def test_a_broken_file_read_by_a_worker_stops_the_run_with_its_one_line(tmp_path, caplog):
    """A worker's UnreadableFile comes back as text in a RuntimeError; run_ingest still
    raises the one-line IngestError and leaves no beam-temp-* behind, and the worker's log of
    it, relayed into this process, is left out as the in-process one is."""
    text = demo_data.write(demo_data.generate(30, seed=2), tmp_path / "log.csv")
    packed = gzip.compress(text.read_bytes())
    truncated = tmp_path / "log.csv.gz"
    truncated.write_bytes(packed[: len(packed) // 2])
    out = tmp_path / "out"
    with pytest.raises(errors.IngestError) as err:
        run_ingest(str(truncated), str(out), S.DEMO_SCHEMA, beam_args=["--direct_num_workers=2"])
    message = str(err.value)
    assert message.startswith(f"cannot read {truncated} ") and "\n" not in message
    assert "EOFError" in message and message.endswith("(nothing was written for this run)")
    assert not list(out.rglob("beam-temp-*"))
    assert not [r for r in caplog.records if "UnreadableFile" in r.getMessage()]
