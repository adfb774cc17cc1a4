"""Rows in blocks: pyarrow's readers give the row reader's rows, and the column checks decide
every row as the row checks do (`validate.check_record`)."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_testlib import good_row

from components.ingest import blocks, columnar, validate
from components.ingest.readers import RawRecord, read_csv
from contract import schema as S


def _rows_of(blocks_: list[blocks.RowBlock]) -> list[tuple]:
    rows = []
    for block in blocks_:
        for i in range(len(block)):
            record = block.record(i)
            rows.append((record.row, record.values, record.problem))
    return rows


CLEAN = (
    b"\xef\xbb\xbfquery,title,price\r\n"
    b'shoes,"Runner, ""fast""",1.5\r\n'
    b"\r\n"
    b'boots,"ab"c,2\r\n'
    b'sofa,q"r,\r\n'
    b",,\r\n"
    b"  lamp ,  Oslo  ,3\r\n"
)
ODD = {
    "a field over two lines": b'query,title\nshoes,"Runner\nfast"\nsofa,Oslo\n',
    "a field with a line of the header's width": b'query,title\nshoes,"Runner\nS,M\nL"\nsofa,Oslo\n',
    "a quote left open": b'query,title\nshoes,"Runner\nsofa,Oslo\nlamp,Lux\n',
    "a quote open to the end": b'query,title\nsofa,Oslo\nshoes,"Runner\n',
    "a quote open to the end, no line end": b'query,title\nsofa,Oslo\nshoes,"Runner',
    "a quote open to the end, CR lines": b'query,title\rsofa,Oslo\rshoes,"Runner',
    "a row too wide": b"query,title\nsofa,Oslo\nboots,Hiker,extra\nlamp,Lux\n",
    "a blank row of spaces": b"query,title\nsofa,Oslo\n   \nlamp,Lux\n",
    "an invalid byte": b"query,title\nsofa,Oslo\ncaf\xe9,Lux\nlamp,Lux\n",
    "blank lines before the header": b"\n\nquery,title\nsofa,Oslo\n",
}


def test_a_clean_csv_is_read_by_pyarrow_as_the_row_reader_reads_it(tmp_path):
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(CLEAN))
    found = list(blocks.read_blocks(str(path), "csv", "utf-8"))
    assert all(b.table is not None for b in found)  # the fast reader took all of it
    assert _rows_of(found) == [(r.row, r.values, r.problem) for r in read_csv(str(path), "utf-8")]
    assert len(_rows_of(found)) == 5


@pytest.mark.parametrize("case", sorted(ODD))
def test_the_row_reader_takes_over_what_pyarrow_reads_otherwise(tmp_path, case):
    path = tmp_path / "log.csv"
    path.write_bytes(ODD[case])
    found = list(blocks.read_blocks(str(path), "csv", "utf-8"))
    assert _rows_of(found) == [(r.row, r.values, r.problem) for r in read_csv(str(path), "utf-8")]
    assert any(b.records is not None for b in found)


def test_a_last_line_without_a_line_end_stays_with_pyarrow_when_its_quotes_close(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b'query,title\nsofa,Oslo\nshoes,"Runner, fast"')
    found = list(blocks.read_blocks(str(path), "csv", "utf-8"))
    assert all(b.table is not None for b in found)
    assert _rows_of(found) == [
        (1, {"query": "sofa", "title": "Oslo"}, None),
        (2, {"query": "shoes", "title": "Runner, fast"}, None),
    ]
    assert _rows_of(found) == [(r.row, r.values, r.problem) for r in read_csv(str(path), "utf-8")]


def test_pyarrow_reads_on_after_a_bad_row(tmp_path, monkeypatch):
    """A row of the wrong width (or a field over two lines) costs the speed of its chunk only:
    the row reader reads from that chunk's first line to the first record that ends a chunk,
    and pyarrow reads the rest."""
    monkeypatch.setattr(blocks, "_CSV_BLOCK_BYTES", 100)  # chunks of about 7 lines
    lines = [f"q{i},title {i}" for i in range(200)]
    lines[20] = "q20,title 20,one field too many"
    lines[120] = 'q120,"a title\nover two lines"'
    path = tmp_path / "log.csv"
    path.write_text("query,title\n" + "\n".join(lines) + "\n", encoding="utf-8")
    found = list(blocks.read_blocks(str(path), "csv", "utf-8"))
    rows = _rows_of(found)
    assert rows == [(r.row, r.values, r.problem) for r in read_csv(str(path), "utf-8")]
    assert [r[0] for r in rows] == list(range(1, 201))
    assert rows[20] == (21, None, "has 3 fields but the header has 2")
    assert rows[120][1] == {"query": "q120", "title": "a title\nover two lines"}
    by_rows = [b for b in found if b.records is not None]
    assert len(by_rows) == 2  # one chunk's rows for each bad row
    assert sum(len(b) for b in by_rows) < 20
    assert found[-1].table is not None and found[0].table is not None


def test_the_row_reader_resumes_after_the_rows_pyarrow_passed_on(tmp_path, monkeypatch):
    monkeypatch.setattr(blocks, "_CSV_BLOCK_BYTES", 64)  # many small blocks
    lines = [f"q{i},title {i}" for i in range(40)]
    lines[30] = 'q30,"a quote left open'
    path = tmp_path / "log.csv"
    path.write_text("query,title\n" + "\n".join(lines) + "\n", encoding="utf-8")
    found = list(blocks.read_blocks(str(path), "csv", "utf-8"))
    assert found[0].table is not None and found[-1].records is not None
    rows = _rows_of(found)
    assert [r[0] for r in rows] == list(range(1, 41))
    assert rows == [(r.row, r.values, r.problem) for r in read_csv(str(path), "utf-8")]


VALUES = {  # column -> values that the column checks take or leave to the row checks
    S.CLICKS: ["3", " 3", "+3", "1e1", "1_0", "3.0", "-1", "", "x", "99999999999999999999", "٣"],
    S.POSITION: ["2.5", "", "NaN", " nan ", "-1", "inf", "1_0", "\xa0", "-0", ".5", "1e400"],
    "price": ["1.5", "", "nan", "-2", "1e3", "abc", "1.", "1,5", "0", "7e-1", "NAN"],
    "rating": ["4", "5.5", "", "-0.1", "3", "5", "0", "4.99", "1e0", "nan", "2"],
    S.QUERY: ["shoes", " Shoes ", "", "  ", "a\u200db", "x", "y", "z", "w", "v", "u"],
    S.TITLE: ["t", "", " t ", "t", "t", "t", "t", "t", "t", "\t", "t"],
}


def _catalogue_rows() -> list[dict[str, str]]:
    rows = []
    for column, values in VALUES.items():
        for i, value in enumerate(values):
            row = good_row(product_id=f"{column}-{i}", **{column: value})
            rows.append(row)
    rows.append(good_row(product_id="funnel", clicks="9", add_to_cart="12"))
    rows.append(
        good_row(product_id="low", impressions="4", clicks="0", add_to_cart="0", purchases="0")
    )
    return rows


def _decided(outcome: columnar.BlockOutcome) -> tuple[list, list]:
    kept = []
    for part in outcome.kept:
        for i in range(len(part)):
            kept.append(
                {c: (v[i] if isinstance(v, list) else float(v[i])) for c, v in part.columns.items()}
            )
    kept.sort(key=lambda r: r[S.PRODUCT_ID])
    return kept, sorted(
        (d["row"], d["reason"], d["message"], str(d["raw"])) for d in outcome.dead_letters
    )


def _same(a: list[dict], b: list[dict]) -> bool:
    def norm(row):
        return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}

    return [norm(r) for r in a] == [norm(r) for r in b]


@pytest.mark.parametrize("policy", ["reject", "clip"])
def test_column_checks_decide_every_row_as_the_row_checks(policy):
    rows = _catalogue_rows()
    records = [RawRecord("/logs/a.csv", i + 1, dict(r), dict(r)) for i, r in enumerate(rows)]
    by_rows = columnar.check_block(
        blocks.RowBlock("/logs/a.csv", records=records), S.DEMO_SCHEMA, "utf-8", policy, {}, []
    )
    table = pa.Table.from_pylist(rows)
    by_columns = columnar.check_block(
        blocks.RowBlock("/logs/a.csv", table=table), S.DEMO_SCHEMA, "utf-8", policy, {}, []
    )
    kept_rows, dead_rows = _decided(by_rows)
    kept_columns, dead_columns = _decided(by_columns)
    assert _same(kept_columns, kept_rows)
    assert dead_columns == dead_rows
    assert by_columns.events == by_rows.events
    # The catalogue has every outcome, and the rows' own checks agree with check_record.
    assert 10 < len(dead_rows) < len(rows) - 10
    assert by_rows.events["rows_filtered_low_impressions"] == 1
    for record in records:
        checked = validate.check_record(record, S.DEMO_SCHEMA, "utf-8", policy)
        in_dead = any(d[0] == record.row for d in dead_rows)
        assert in_dead == (checked.outcome == validate.DEAD_LETTER)


def test_typed_parquet_columns_are_checked_as_the_row_reader_reads_them(tmp_path):
    rows = _catalogue_rows()[:6]
    frame = pd.DataFrame(rows)
    for column in (
        *S.DEMO_SCHEMA.funnel,
        "price",
        "rating",
        "review_count",
        "popularity",
        "discount",
    ):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame.loc[2, S.CLICKS] = np.nan  # a missing count in a float column
    frame.loc[3, "price"] = np.inf
    path = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    found = list(blocks.read_blocks(str(path), "parquet", "utf-8"))
    assert found[0].table is not None
    records = [found[0].record(i) for i in range(len(found[0]))]
    by_rows = columnar.check_block(
        blocks.RowBlock(str(path), records=records), S.DEMO_SCHEMA, "utf-8", "reject", {}, []
    )
    by_columns = columnar.check_block(found[0], S.DEMO_SCHEMA, "utf-8", "reject", {}, [])
    assert _same(_decided(by_columns)[0], _decided(by_rows)[0])
    assert _decided(by_columns)[1] == _decided(by_rows)[1]
    reasons = {d["row"]: d["reason"] for d in by_columns.dead_letters}
    assert reasons == {3: "missing_value", 4: "not_a_number", 5: "missing_value"}  # 5: "1_0"
    assert all(type(d["row"]) is int for d in by_columns.dead_letters)


def test_parquet_counts_beyond_2_53_are_kept_exactly_or_out_of_range(tmp_path):
    """Integer counts are compared as integers: 2^53 + 1 stays 2^53 + 1 (a float64 would
    make it 2^53 and miss the funnel violation below), 2^62 is kept, and a uint64 beyond
    int64 is out_of_range, on the column path as on the row path."""
    big = [2**53 + 1, 2**62, 2**53, 2**64 - 1, 2**63 - 1]
    clicks = [2**53 + 1, 2**62 - 1, 2**53 + 1, 5, 2**63 - 1]
    rows = [good_row(product_id=f"P{i}") for i in range(len(big))]
    for kind in (pa.int64(), pa.uint64()):
        keep = big if kind == pa.uint64() else [*big[:3], 7, big[4]]
        table = pa.Table.from_pylist(rows)
        for name, values in ((S.IMPRESSIONS, keep), (S.CLICKS, clicks)):
            table = table.set_column(table.column_names.index(name), name, pa.array(values, kind))
        for name in (S.ADD_TO_CART, S.PURCHASES):
            table = table.set_column(
                table.column_names.index(name), name, pa.array([1] * len(big), kind)
            )
        path = tmp_path / f"log-{kind}.parquet"
        pq.write_table(table, path)
        found = list(blocks.read_blocks(str(path), "parquet", "utf-8"))
        records = [found[0].record(i) for i in range(len(found[0]))]
        by_rows = columnar.check_block(
            blocks.RowBlock(str(path), records=records), S.DEMO_SCHEMA, "utf-8", "reject", {}, []
        )
        by_columns = columnar.check_block(found[0], S.DEMO_SCHEMA, "utf-8", "reject", {}, [])
        assert _decided(by_columns)[1] == _decided(by_rows)[1]
        (part,) = by_columns.kept
        kept = dict(zip(part.columns[S.PRODUCT_ID], part.columns[S.IMPRESSIONS], strict=True))
        letters = [(d["row"], d["reason"], d["field"]) for d in by_columns.dead_letters]
        if kind == pa.uint64():
            assert kept == {"P0": 2**53 + 1, "P1": 2**62, "P4": 2**63 - 1}
            assert letters == [
                (3, "funnel_violation", S.CLICKS),
                (4, "out_of_range", S.IMPRESSIONS),
            ]
            assert by_columns.dead_letters[1]["message"] == (
                f"row 4 of {path.name}: field 'impressions' is beyond the largest count, "
                "2^63 - 1: 18446744073709551615"
            )
        else:
            assert kept == {"P0": 2**53 + 1, "P1": 2**62, "P3": 7, "P4": 2**63 - 1}
            assert letters == [(3, "funnel_violation", S.CLICKS)]
        clicks_kept = dict(zip(part.columns[S.PRODUCT_ID], part.columns[S.CLICKS], strict=True))
        assert clicks_kept["P0"] == 2**53 + 1 and clicks_kept["P1"] == 2**62 - 1
