"""Ingest of a hand-written log with known bad rows: counts, dead letters, examples, policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ingest_testlib import BAD_LOG_DEAD_LETTERS, read_all_splits, write_bad_csv, write_bad_jsonl

from components.ingest import errors
from components.ingest.counts import IngestCounts, SplitCounts
from components.ingest.job import read_dead_letters, run_ingest
from contract import layout
from contract import schema as S

NO_DEAD_LETTERS = dict.fromkeys(errors.REASONS, 0)


@pytest.fixture(scope="module")
def bad_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bad_csv(tmp_path_factory.mktemp("input") / "bad.csv")


@pytest.fixture(scope="module")
def rejected(bad_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IngestCounts]:
    out = tmp_path_factory.mktemp("rejected")
    return out, run_ingest(str(bad_csv), str(out), S.DEMO_SCHEMA)


@pytest.fixture(scope="module")
def clipped(bad_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IngestCounts]:
    out = tmp_path_factory.mktemp("clipped")
    return out, run_ingest(str(bad_csv), str(out), S.DEMO_SCHEMA, funnel_policy="clip")


@pytest.fixture(scope="module")
def from_jsonl(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, IngestCounts]:
    source = write_bad_jsonl(tmp_path_factory.mktemp("input_jsonl") / "bad.jsonl")
    out = tmp_path_factory.mktemp("from_jsonl")
    return out, run_ingest(str(source), str(out), S.DEMO_SCHEMA)


def test_counts_of_each_outcome(rejected):
    out, counts = rejected
    expected_reasons = NO_DEAD_LETTERS | {
        "not_an_integer": 1,
        "missing_value": 2,
        "not_a_number": 1,
        "out_of_range": 1,
        "negative_count": 1,
        "funnel_violation": 1,
        "malformed_row": 1,
    }
    assert counts == IngestCounts(
        rows_read=14,
        rows_kept=4,
        rows_filtered_low_impressions=2,
        rows_dead_letter=8,
        dead_letter_by_reason=expected_reasons,
        funnel_clipped=0,
        splits={
            "train": SplitCounts(rows=1, queries=1),
            "eval": SplitCounts(rows=1, queries=1),
            "test": SplitCounts(rows=2, queries=2),
        },
    )
    assert counts.rows_read == (
        counts.rows_kept + counts.rows_filtered_low_impressions + counts.rows_dead_letter
    )
    assert IngestCounts.from_json((out / layout.COUNTS_FILE).read_text()) == counts
    assert S.RawSchema.load(out / layout.SCHEMA_FILE) == S.DEMO_SCHEMA


def test_dead_letters_name_row_field_and_reason(rejected, bad_csv):
    out, _ = rejected
    dead = read_dead_letters(str(out))
    assert [(d["row"], d["reason"], d["field"]) for d in dead] == BAD_LOG_DEAD_LETTERS
    assert {d["source"] for d in dead} == {str(bad_csv)}
    by_row = {d["row"]: d for d in dead}
    assert by_row[6]["message"] == "row 6 of bad.csv: field 'clicks' is not an integer: 'abc'"
    assert by_row[7]["message"] == "row 7 of bad.csv: field 'title' is empty or missing"
    assert by_row[9]["message"] == "row 9 of bad.csv: field 'rating' is 7.5, above the maximum 5"
    assert by_row[11]["message"].startswith(
        "row 11 of bad.csv: field 'purchases' is 4, more than add_to_cart (2)"
    )
    assert by_row[12]["message"] == "row 12 of bad.csv: has 3 fields but the header has 20"
    assert by_row[12]["raw"] == ["oops", "only", "three"]
    assert by_row[6]["raw"]["clicks"] == "abc"
    assert by_row[6]["raw"]["campaign"] == "spring"


def test_examples_parse_back_with_values_and_labels(rejected):
    out, _ = rejected
    splits = read_all_splits(out)
    assert {s: sorted(r["product_id"] for r in rows) for s, rows in splits.items()} == {
        "train": ["P1"],
        "eval": ["P2"],
        "test": ["P14", "P3"],
    }
    first = splits["train"][0]
    assert first == pytest.approx(
        {
            "query": "red running shoes",
            "product_id": "P1",
            "title": "Urban Stride men's running shoes, red",
            "product_type": "running shoes",
            "brand": "Urban Stride",
            "color": "red",
            "gender": "men",
            "description": "Light shoes for daily runs.",
            "lexical_score": 1.0,
            "price": 89.5,
            "rating": 4.5,
            "review_count": 120.0,
            "popularity": 900.0,
            "discount": 0.1,
            "impressions": 100,
            "clicks": 10,
            "add_to_cart": 3,
            "purchases": 1,
            "position": 2.5,
            "click": 1,
            "atc": 1,
            "purchase": 1,
        }
    )
    sofa = splits["eval"][0]
    assert sofa["query"] == "Leather  Sofa"  # stripped, inner spacing kept
    assert sofa["title"] == 'Arbor Home "Oslo" sofa,\nthree-seater'  # quoted comma and newline
    assert sofa["gender"] == ""
    assert sofa["position"] == 0.0  # missing position means unknown
    assert (sofa["click"], sofa["atc"], sofa["purchase"]) == (0, 0, 0)
    trainers = next(r for r in splits["test"] if r["product_id"] == "P3")
    assert trainers["impressions"] == 40  # written as "40.0"
    assert (trainers["click"], trainers["atc"], trainers["purchase"]) == (1, 0, 0)
    coffee = next(r for r in splits["test"] if r["product_id"] == "P14")
    assert coffee["description"] == ""
    assert (coffee["click"], coffee["atc"], coffee["purchase"]) == (1, 1, 0)


def test_clip_policy_keeps_and_clips_funnel_violations(rejected, clipped):
    out, counts = clipped
    _, reject_counts = rejected
    assert counts.funnel_clipped == 1
    assert counts.dead_letter_by_reason["funnel_violation"] == 0
    assert counts.rows_dead_letter == reject_counts.rows_dead_letter - 1
    assert counts.rows_kept == reject_counts.rows_kept + 1
    assert counts.splits["test"] == SplitCounts(rows=3, queries=2)
    row = next(r for r in read_all_splits(out)["test"] if r["product_id"] == "P11")
    assert (row["impressions"], row["clicks"], row["add_to_cart"], row["purchases"]) == (
        20,
        2,
        2,
        2,
    )
    assert (row["click"], row["atc"], row["purchase"]) == (1, 1, 1)


def test_jsonl_reads_like_csv(rejected, from_jsonl):
    csv_out, csv_counts = rejected
    jsonl_out, jsonl_counts = from_jsonl
    assert jsonl_counts == csv_counts
    dead = read_dead_letters(str(jsonl_out))
    assert [(d["row"], d["reason"], d["field"]) for d in dead] == BAD_LOG_DEAD_LETTERS
    assert dead[6]["message"] == "row 12 of bad.jsonl: is a JSON list, not an object"
    assert read_all_splits(jsonl_out) == read_all_splits(csv_out)


def test_rerun_replaces_earlier_output(bad_csv, rejected, tmp_path):
    out, counts = rejected
    stale = out / "train" / f"data-00001-of-00002{layout.SPLIT_SUFFIX}"
    stale.write_bytes(b"left over from an earlier run")
    assert run_ingest(str(bad_csv), str(out), S.DEMO_SCHEMA) == counts
    assert not stale.exists()
    assert json.loads((out / layout.COUNTS_FILE).read_text())["rows_read"] == 14


def test_duplicated_pairs_keep_the_first_and_dead_letter_the_rest(tmp_path):
    import csv

    from ingest_testlib import HEADER, good_row

    def write(path, rows):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=HEADER)
            writer.writeheader()
            writer.writerows(rows)

    write(
        tmp_path / "a.csv",
        [
            good_row(product_id="P1"),
            good_row(product_id="P2"),
            good_row(product_id="P1", clicks="99"),  # same pair: a duplicate of row 1
            good_row(query="  red running shoes ", product_id="P2 "),  # same after stripping
            good_row(query="blue shoes", product_id="P1"),  # another query: not a duplicate
            # The same query for the normalisation (case, inner spaces, a zero-width joiner).
            good_row(query="Red  RUNNING shoes\u200d", product_id="P2"),
        ],
    )
    write(tmp_path / "b.csv", [good_row(product_id="P1")])  # a later file: a duplicate too
    counts = run_ingest(str(tmp_path / "*.csv"), str(tmp_path / "out"), S.DEMO_SCHEMA)
    assert counts.rows_read == 7
    assert counts.dead_letter_by_reason[errors.DUPLICATE_PAIR] == 4
    assert counts.rows_kept == 3 and counts.rows_dead_letter == 4
    assert counts.rows_read == counts.rows_kept + counts.rows_filtered_low_impressions + 4
    dead = read_dead_letters(str(tmp_path / "out"))
    assert [(Path(d["source"]).name, d["row"]) for d in dead] == [
        ("a.csv", 3),
        ("a.csv", 4),
        ("a.csv", 6),
        ("b.csv", 1),
    ]
    assert dead[0]["message"] == (
        "row 3 of a.csv: the pair (query 'red running shoes', product_id 'P1') already came "
        "in row 1 of a.csv"
    )
    assert dead[0]["raw"]["clicks"] == "99"  # the rejected copy, as it was written
    # The kept copy of the pair is the first one (10 clicks, not 99).
    rows = [r for split in read_all_splits(tmp_path / "out").values() for r in split]
    kept = [r for r in rows if r[S.PRODUCT_ID] == "P1"]
    assert sorted(r[S.CLICKS] for r in kept) == [10, 10]


def test_numbers_too_long_for_int_or_float_are_dead_letters_in_csv_and_jsonl(tmp_path):
    """A count of 5,000 digits is past int()'s 4,300-digit limit (in the row checks, and in
    json.loads of JSONL's up-front check); 10^400 is past a float. Each is its row's dead
    letter, with the same reason from CSV and JSONL, and the other rows are kept."""
    import csv

    from ingest_testlib import HEADER, good_row

    huge = "9" * 5000
    rows = [
        good_row(product_id="P1", impressions=huge),
        good_row(product_id="P2"),
        good_row(product_id="P3", clicks="-" + huge),
        good_row(product_id="P4", price="1" + "0" * 400),
        good_row(product_id="P5", clicks="0" * 30 + "7"),  # 31 digits, a plain 7
    ]
    with (tmp_path / "log.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows([[row[c] for c in HEADER] for row in rows])
    # JSON numbers written as numbers (JSON has no leading zeros: P5's clicks are 7); the
    # first line is read by the up-front check too.
    numbers = (S.IMPRESSIONS, S.CLICKS, "price")
    lines = []
    for row in rows:
        text = json.dumps({k: v for k, v in row.items() if k not in numbers})
        typed = ", ".join(f'"{k}": {row[k].lstrip("0") or "0"}' for k in numbers)
        lines.append(f"{text[:-1]}, {typed}}}")
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = [
        (1, "out_of_range", S.IMPRESSIONS),
        (3, "negative_count", S.CLICKS),
        (4, "not_a_number", "price"),
    ]
    for name in ("log.csv", "log.jsonl"):
        out = tmp_path / f"out-{name}"
        counts = run_ingest(str(tmp_path / name), str(out), S.DEMO_SCHEMA)
        assert (counts.rows_read, counts.rows_kept, counts.rows_dead_letter) == (5, 2, 3)
        dead = read_dead_letters(str(out))
        assert [(d["row"], d["reason"], d["field"]) for d in dead] == expected, name
        quote = "'" if name == "log.csv" else ""
        assert dead[0]["message"] == (
            f"row 1 of {name}: field 'impressions' is beyond the largest count, 2^63 - 1: "
            f"{quote}{'9' * (55 if quote else 57)}{quote}..."
        )
        assert dead[1]["message"].startswith(f"row 3 of {name}: field 'clicks' is negative: ")
        assert len(dead[1]["message"]) < 120
        assert dead[2]["message"].startswith(
            f"row 4 of {name}: field 'price' is beyond the range of a 64-bit float: {quote}1000"
        )
        kept = sorted(r[S.CLICKS] for split in read_all_splits(out).values() for r in split)
        assert kept == [7, 10]


def test_a_failed_run_leaves_no_temporary_folders(bad_csv, tmp_path, monkeypatch):
    """Beam's write sinks make beam-temp-* folders beside counts.json and in dead_letter/,
    and the split writer one in train/, eval/ and test/ for each file it writes; a run that
    stops (a broken file, or any failure inside the job, here right after a split's first
    rows were written) deletes them all."""
    import gzip

    from components import raw_splits

    truncated = tmp_path / "log.csv.gz"
    packed = gzip.compress(bad_csv.read_bytes() * 50)
    truncated.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(errors.IngestError, match="truncated or corrupt"):
        run_ingest(str(truncated), str(tmp_path / "broken"), S.DEMO_SCHEMA)

    written = raw_splits._Shard.add

    def crash(shard, batch):
        written(shard, batch)
        raise RuntimeError("a failure inside the job")

    monkeypatch.setattr(raw_splits._Shard, "add", crash)
    with pytest.raises(RuntimeError, match="a failure inside the job"):
        run_ingest(str(bad_csv), str(tmp_path / "crashed"), S.DEMO_SCHEMA)
    assert (tmp_path / "crashed" / "train").is_dir()  # the split writer had started
    for out in ("broken", "crashed"):
        assert sorted(str(p) for p in (tmp_path / out).rglob("beam-temp-*")) == []
        assert not list((tmp_path / out).rglob("*.parquet"))
