"""Unusable input fails up front with a clear IngestError; odd encodings are dead-lettered or read."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from ingest_testlib import HEADER, good_row, read_all_splits, read_split

from components.ingest import demo_data, sources
from components.ingest.errors import IngestError
from components.ingest.job import read_dead_letters, run_ingest
from contract import layout
from contract import schema as S


def _write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows([[row[c] for c in header] for row in rows])
    return path


def test_missing_columns_are_all_named(tmp_path):
    header = [c for c in HEADER if c not in (S.CLICKS, "price")]
    source = _write_csv(tmp_path / "partial.csv", header, [good_row()])
    with pytest.raises(IngestError) as err:
        run_ingest(str(source), str(tmp_path / "out"), S.DEMO_SCHEMA)
    assert str(err.value) == f"CSV header of {source} is missing required column(s): clicks, price"
    assert not (tmp_path / "out").exists()  # nothing ran


def test_optional_columns_may_be_absent(tmp_path):
    optional = {S.DESCRIPTION, S.POSITION, S.BRAND, S.COLOR, S.GENDER}
    header = [c for c in HEADER if c not in optional]
    source = _write_csv(tmp_path / "lean.csv", header, [good_row()])
    inputs = sources.resolve_inputs(str(source), "auto", "utf-8", S.DEMO_SCHEMA)
    size = source.stat().st_size
    assert inputs == (sources.InputFile(path=str(source), format="csv", size=size),)


def test_missing_parquet_columns_are_named(tmp_path):
    frame = demo_data.generate(2, seed=0).drop(columns=[S.IMPRESSIONS, "rating"])
    source = demo_data.write(frame, tmp_path / "log.parquet")
    with pytest.raises(
        IngestError,
        match=r"Parquet schema of .*log\.parquet is missing required column\(s\): impressions, rating",
    ):
        run_ingest(str(source), str(tmp_path / "out"), S.DEMO_SCHEMA)


def test_empty_file(tmp_path):
    source = tmp_path / "empty.csv"
    source.write_bytes(b"")
    with pytest.raises(IngestError, match=r"empty\.csv is empty"):
        run_ingest(str(source), str(tmp_path / "out"), S.DEMO_SCHEMA)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    with pytest.raises(IngestError, match=r"blank\.csv is empty: no CSV header line"):
        run_ingest(str(blank), str(tmp_path / "out"), S.DEMO_SCHEMA)


def test_no_matching_file(tmp_path):
    pattern = str(tmp_path / "logs" / "*.csv")
    with pytest.raises(IngestError, match="no file matches the input pattern"):
        run_ingest(pattern, str(tmp_path / "out"), S.DEMO_SCHEMA)


def test_bad_options(tmp_path):
    source = _write_csv(tmp_path / "log.csv", HEADER, [good_row()])
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="funnel_policy must be one of reject, clip, got 'drop'"):
        run_ingest(str(source), out, S.DEMO_SCHEMA, funnel_policy="drop")
    with pytest.raises(
        IngestError, match="input_format must be one of auto, csv, jsonl, parquet, got 'xlsx'"
    ):
        run_ingest(str(source), out, S.DEMO_SCHEMA, input_format="xlsx")
    with pytest.raises(IngestError, match="unknown encoding 'klingon'"):
        run_ingest(str(source), out, S.DEMO_SCHEMA, encoding="klingon")
    odd = source.rename(tmp_path / "log.txt")
    with pytest.raises(IngestError, match=r"cannot tell the format of .*log\.txt"):
        run_ingest(str(odd), out, S.DEMO_SCHEMA)
    with pytest.raises(IngestError, match="is a directory"):
        run_ingest(str(tmp_path), out, S.DEMO_SCHEMA)


def test_header_without_rows(tmp_path):
    source = _write_csv(tmp_path / "header_only.csv", HEADER, [])
    with pytest.raises(IngestError, match=r"no data rows in .*header_only\.csv"):
        run_ingest(str(source), str(tmp_path / "out"), S.DEMO_SCHEMA)


@pytest.fixture(scope="module")
def latin1_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two rows of one query written in ISO-8859-1; the first title has a non-ASCII letter."""
    path = tmp_path_factory.mktemp("latin1") / "latin.csv"
    rows = [
        good_row(query="coffee mug", product_id="M1", title="Café Luma mug"),
        good_row(query="coffee mug", product_id="M2", title="Luma mug"),
    ]
    with path.open("w", encoding="iso-8859-1", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows([[row[c] for c in HEADER] for row in rows])
    assert b"Caf\xe9 Luma" in path.read_bytes()
    return path


def test_undecodable_text_is_dead_lettered(latin1_csv, tmp_path):
    counts = run_ingest(str(latin1_csv), str(tmp_path), S.DEMO_SCHEMA, encoding="utf-8")
    assert (counts.rows_read, counts.rows_kept) == (2, 1)
    assert counts.dead_letter_by_reason["invalid_encoding"] == 1
    (dead,) = read_dead_letters(str(tmp_path))
    assert (dead["row"], dead["reason"], dead["field"]) == (1, "invalid_encoding", "title")
    assert dead["message"].startswith(
        "row 1 of latin.csv: field 'title' is not valid utf-8 text: 'Caf\\xe9 Luma mug'"
    )  # the byte shown once as \xe9, not with a doubled backslash
    # The option's name for both ways to run ingest.
    assert "iso-8859-1: the pipeline's --input-encoding" in dead["message"]
    assert "--encoding of python -m components.ingest" in dead["message"]
    assert dead["raw"]["title"] == "Caf\\xe9 Luma mug"
    # Every split has a shard, even the empty ones (one query fills one split).
    splits = read_all_splits(tmp_path)
    assert sorted(len(rows) for rows in splits.values()) == [0, 0, 1]


def test_an_undecodable_query_or_product_id_is_dead_lettered_not_a_crash(tmp_path):
    # The pair key of duplicate detection is built before validation: it must take the bytes.
    path = tmp_path / "latin.csv"
    rows = [
        good_row(query="café mug", product_id="M1"),
        good_row(query="coffee mug", product_id="Mé2"),
        good_row(query="coffee mug", product_id="M3"),
    ]
    with path.open("w", encoding="iso-8859-1", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows([[row[c] for c in HEADER] for row in rows])
    counts = run_ingest(str(path), str(tmp_path / "out"), S.DEMO_SCHEMA, encoding="utf-8")
    assert (counts.rows_read, counts.rows_kept) == (3, 1)
    dead = read_dead_letters(str(tmp_path / "out"))
    assert [(d["row"], d["reason"], d["field"]) for d in dead] == [
        (1, "invalid_encoding", "query"),
        (2, "invalid_encoding", "product_id"),
    ]


def test_declared_encoding_reads_the_text(latin1_csv, tmp_path):
    counts = run_ingest(str(latin1_csv), str(tmp_path), S.DEMO_SCHEMA, encoding="iso-8859-1")
    assert (counts.rows_read, counts.rows_kept, counts.rows_dead_letter) == (2, 2, 0)
    titles = sorted(r["title"] for rows in read_all_splits(tmp_path).values() for r in rows)
    assert titles == ["Café Luma mug", "Luma mug"]


def test_optional_ranking_feature_may_be_missing(tmp_path):
    raw_schema = S.RawSchema(
        ranking_features=(
            S.RankingFeature("price", log1p=True, min_value=0.0),
            S.RankingFeature("margin", required=False),
        )
    )
    rows = [
        good_row(query="red running shoes", product_id="A", margin="0.25"),
        good_row(query="red running shoes", product_id="B", margin=""),
    ]
    header = [*S.REQUIRED_TEXT_COLUMNS, *S.DEMO_SCHEMA.funnel, "price", "margin"]
    source = _write_csv(tmp_path / "margin.csv", header, rows)
    counts = run_ingest(str(source), str(tmp_path / "out"), raw_schema)
    assert counts.rows_kept == 2
    assert S.RawSchema.load(tmp_path / "out" / layout.SCHEMA_FILE) == raw_schema
    (split,) = [s for s, c in counts.splits.items() if c.rows]
    kept = {r["product_id"]: r for r in read_split(tmp_path / "out", split, raw_schema)}
    assert kept["A"]["margin"] == [pytest.approx(0.25)]
    assert kept["B"]["margin"] == []  # absent from the example
    assert kept["B"]["brand"] == ""  # a contract column absent from the file is written empty
    assert kept["A"]["price"] == pytest.approx(89.5)


def test_jsonl_without_a_required_key_in_any_row_stops_up_front(tmp_path):
    import json as json_lib

    from components.ingest import sources

    path = tmp_path / "log.jsonl"
    rows = [
        {k: v for k, v in good_row(product_id=f"P{i}").items() if k != "clicks"} for i in range(3)
    ]
    path.write_text("\n".join(json_lib.dumps(r) for r in rows) + "\nnot json\n", encoding="utf-8")
    with pytest.raises(IngestError) as err:
        sources.resolve_inputs(str(path), "auto", "utf-8", S.DEMO_SCHEMA)
    assert str(err.value) == (
        f"every one of the first 3 JSON object(s) of {path} is missing required column(s): clicks"
    )
    # One row with the key is enough: the others are dead-lettered row by row.
    rows[1]["clicks"] = 1
    path.write_text("\n".join(json_lib.dumps(r) for r in rows) + "\n", encoding="utf-8")
    assert len(sources.resolve_inputs(str(path), "auto", "utf-8", S.DEMO_SCHEMA)) == 1


def test_a_parquet_column_named_twice_is_refused_up_front(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([good_row(product_id="P1"), good_row(product_id="P2")])
    table = table.append_column("price", pa.array(["1.0", "2.0"]))
    source = tmp_path / "twice.parquet"
    pq.write_table(table, source)
    with pytest.raises(IngestError) as err:
        run_ingest(str(source), str(tmp_path / "out"), S.DEMO_SCHEMA)
    assert str(err.value) == f"Parquet schema of {source} names column(s) twice: 'price'"
    assert not (tmp_path / "out").exists()  # nothing ran


def test_unnamed_header_columns_are_ignored_and_named_twins_refused(tmp_path):
    """A spreadsheet export ends its header with empty columns: they count for a row's width
    and are ignored like extra columns, on both readers; a real name twice is refused, named."""
    from components.ingest import blocks, readers

    header = [*HEADER, "", " "]
    rows = [
        good_row(product_id="P1") | {"": "", " ": ""},
        good_row(product_id="P2", price="cheap") | {"": "x", " ": "y"},
    ]
    with (tmp_path / "sheet.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows([[row[c] for c in header] for row in rows])
    source = tmp_path / "sheet.csv"
    counts = run_ingest(str(source), str(tmp_path / "out"), S.DEMO_SCHEMA)
    assert (counts.rows_read, counts.rows_kept, counts.rows_dead_letter) == (2, 1, 1)
    (dead,) = read_dead_letters(str(tmp_path / "out"))
    assert (dead["row"], dead["reason"], dead["field"]) == (2, "not_a_number", "price")
    assert dead["raw"] == good_row(product_id="P2", price="cheap")  # no unnamed key
    found = list(blocks.read_blocks(str(source), "csv", "utf-8"))
    assert [b.table is not None for b in found] == [True]
    by_blocks = [found[0].record(i).values for i in range(len(found[0]))]
    assert by_blocks == [r.values for r in readers.read_csv(str(source), "utf-8")]
    assert by_blocks[1] == good_row(product_id="P2", price="cheap")

    twins = _write_csv(tmp_path / "twins.csv", [*HEADER, "price", "", ""], [])
    with pytest.raises(IngestError) as err:
        run_ingest(str(twins), str(tmp_path / "out2"), S.DEMO_SCHEMA)
    assert str(err.value) == f"CSV header of {twins} names column(s) twice: 'price'"
