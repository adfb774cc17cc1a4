"""The Home Depot adapter on the real file in ../shared/data: opt-in (`-m large`), and skipped
when the file is absent. The CLI test runs a 74k-row Beam ingest."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from components.ingest.adapters import homedepot
from contract import schema as S

DATA = (
    Path(__file__).resolve().parents[3].parent / "shared" / "data" / "homedepot" / "train.csv.zip"
)
pytestmark = [
    pytest.mark.large,
    pytest.mark.skipif(
        not DATA.exists(),
        reason=f"Home Depot data not found at {DATA} (see ../shared/data/README.md)",
    ),
]


@pytest.fixture(scope="module")
def log():
    return homedepot.simulate(homedepot.read_source(DATA), seed=0)


def test_every_judged_pair_becomes_one_row(log):
    assert len(log) == 74067
    assert log[S.QUERY].nunique() == 11795
    assert log[S.PRODUCT_ID].nunique() == 54667
    assert not log.duplicated([S.QUERY, S.PRODUCT_ID]).any()


def test_latin1_text_is_decoded(log):
    titles = " ".join(log[S.TITLE])
    assert "\ufffd" not in titles  # no replacement characters
    assert any(ord(c) > 127 for c in titles)  # the file does contain non-ASCII letters


def test_funnel_is_consistent_and_follows_the_grades(log):
    assert (log[S.IMPRESSIONS] >= log[S.CLICKS]).all()
    assert (log[S.CLICKS] >= log[S.ADD_TO_CART]).all()
    assert (log[S.ADD_TO_CART] >= log[S.PURCHASES]).all()
    high, low = log[log["relevance"] >= 2.67], log[log["relevance"] <= 1.67]
    ctr = lambda d: d[S.CLICKS].sum() / d[S.IMPRESSIONS].sum()  # noqa: E731
    assert ctr(high) > 4 * ctr(low)
    # Position bias: at equal grade, the top position is clicked more than position 5+.
    top = log[(log[S.POSITION] == 1) & (log["relevance"] == 3)]
    deep = log[(log[S.POSITION] >= 5) & (log["relevance"] == 3)]
    assert ctr(top) > 1.5 * ctr(deep)


def test_seeded(log):
    again = homedepot.simulate(homedepot.read_source(DATA), seed=0)
    assert again[S.CLICKS].equals(log[S.CLICKS])
    other = homedepot.simulate(homedepot.read_source(DATA), seed=1)
    assert not other[S.CLICKS].equals(log[S.CLICKS])


def test_features_are_from_text(log):
    row = log[(log[S.QUERY] == "angle bracket") & (log[S.PRODUCT_ID] == "100001")].iloc[0]
    assert row[S.TITLE] == "Simpson Strong-Tie 12-Gauge Angle"
    assert row["lexical_score"] == 0.5  # "angle" of {"angle", "bracket"}
    assert row["query_words"] == 2
    assert np.all(log["catalog_queries"] >= 1)


def test_cli_writes_a_log_ingest_accepts(tmp_path):
    from components.ingest import job

    out = tmp_path / "hd.csv"
    done = subprocess.run(
        [sys.executable, "-m", "components.ingest.adapters", "homedepot", "--input", str(DATA), "--out", str(out)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[3], env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    schema = S.RawSchema.load(tmp_path / "hd.schema.json")
    assert schema.feature_names == homedepot.SCHEMA.feature_names
    counts = job.run_ingest(str(out), str(tmp_path / "examples"), schema)
    assert counts.rows_read == 74067 and counts.rows_dead_letter == 0
    assert counts.rows_kept + counts.rows_filtered_low_impressions == 74067
