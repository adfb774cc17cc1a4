"""The streaming readers: row numbers, quoting, blank lines, byte order marks, bad lines."""

from __future__ import annotations

from components.ingest.readers import read_csv, read_jsonl


def test_csv_rows_are_numbered_by_record(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(
        b"\xef\xbb\xbf query , title\r\n"
        b'shoes,"Runner, ""fast""\r\nsecond line"\r\n'
        b"\r\n"
        b"boots,Hiker,extra\r\n"
        b"sofa,Oslo\r\n"
    )
    records = list(read_csv(str(path), "utf-8"))
    assert [(r.row, r.values, r.problem) for r in records] == [
        (1, {"query": "shoes", "title": 'Runner, "fast"\r\nsecond line'}, None),
        (2, None, "has 3 fields but the header has 2"),
        (3, {"query": "sofa", "title": "Oslo"}, None),
    ]
    assert records[1].raw == ["boots", "Hiker", "extra"]
    assert {r.source for r in records} == {str(path)}


def test_jsonl_rows_are_numbered_by_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(
        '\ufeff{"query": "shoes"}\n\n{"query": \n"sofa"\n  {"query": "boots"}  \n', encoding="utf-8"
    )
    records = list(read_jsonl(str(path), "utf-8"))
    assert [(r.row, r.values) for r in records] == [
        (1, {"query": "shoes"}),
        (3, None),
        (4, None),
        (5, {"query": "boots"}),
    ]
    assert records[1].problem.startswith("is not valid JSON")
    assert records[1].raw == '{"query":'
    assert records[2].problem == "is a JSON str, not an object"
