"""Ingest of generated demo logs: split by query, and the same result from CSV, JSONL and Parquet."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from ingest_testlib import read_all_splits

from components.ingest import demo_data
from components.ingest.counts import IngestCounts
from components.ingest.job import read_dead_letters, run_ingest
from components.ingest.split import normalize_query, split_of
from contract import schema as S

NUM_QUERIES = 300


@pytest.fixture(scope="module")
def log():
    return demo_data.generate(NUM_QUERIES, seed=7)


@pytest.fixture(scope="module")
def ingested(log, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, IngestCounts]]:
    """The log ingested from two CSV files (one glob, one gzipped), from JSONL and from Parquet."""
    inputs = tmp_path_factory.mktemp("demo_inputs")
    half = len(log) // 2
    demo_data.write(log.iloc[:half], inputs / "csv" / "part-1.csv")
    second = demo_data.write(log.iloc[half:], inputs / "csv" / "part-2.csv")
    with second.open("rb") as plain, gzip.open(f"{second}.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)  # compressed text input is read too
    second.unlink()
    demo_data.write(log, inputs / "demo.jsonl")
    demo_data.write(log, inputs / "demo.parquet")
    runs = {}
    for fmt, pattern in (
        ("csv", inputs / "csv" / "part-*"),
        ("jsonl", inputs / "demo.jsonl"),
        ("parquet", inputs / "demo.parquet"),
    ):
        out = tmp_path_factory.mktemp(f"demo_{fmt}")
        runs[fmt] = out, run_ingest(str(pattern), str(out), S.DEMO_SCHEMA)
    return runs


def test_counts_match_the_log(log, ingested):
    out, counts = ingested["csv"]
    low = int((log[S.IMPRESSIONS] <= S.MIN_IMPRESSIONS_EXCLUSIVE).sum())
    assert counts.rows_read == len(log)
    assert counts.rows_dead_letter == 0
    assert read_dead_letters(str(out)) == []
    assert counts.rows_filtered_low_impressions == low > 0
    assert counts.rows_kept == len(log) - low
    kept = log[log[S.IMPRESSIONS] > S.MIN_IMPRESSIONS_EXCLUSIVE]
    assert sum(c.queries for c in counts.splits.values()) == kept[S.QUERY].nunique()


def test_no_query_in_two_splits(ingested):
    out, counts = ingested["csv"]
    splits = read_all_splits(out)
    queries = {s: {normalize_query(r[S.QUERY]) for r in rows} for s, rows in splits.items()}
    assert not queries["train"] & queries["eval"]
    assert not queries["train"] & queries["test"]
    assert not queries["eval"] & queries["test"]
    for split, rows in splits.items():
        assert len(rows) == counts.splits[split].rows
        assert len(queries[split]) == counts.splits[split].queries
        assert {split_of(r[S.QUERY]) for r in rows} == {split}
    share = counts.splits["train"].queries / sum(c.queries for c in counts.splits.values())
    assert 0.7 < share < 0.9


def test_labels_follow_the_counts(ingested):
    out, _ = ingested["csv"]
    rows = [r for split_rows in read_all_splits(out).values() for r in split_rows]
    for task in S.DEFAULT_FUNNEL:
        assert all(r[task.name] == int(r[task.count] > 0) for r in rows)
    assert (
        0
        < sum(r["purchase"] for r in rows)
        < sum(r["atc"] for r in rows)
        < sum(r["click"] for r in rows)
    )


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_formats_read_like_csv(ingested, fmt):
    csv_out, csv_counts = ingested["csv"]
    out, counts = ingested[fmt]
    assert counts == csv_counts

    def by_pair(rows):
        return sorted(rows, key=lambda r: (r[S.QUERY], r[S.PRODUCT_ID]))

    expected, actual = read_all_splits(csv_out), read_all_splits(out)
    for split in S.SPLITS:
        assert by_pair(actual[split]) == by_pair(expected[split])
