"""The streaming readers: row numbers, quoting, blank lines, byte order marks, bad lines."""

from __future__ import annotations

import pytest

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


def _rows(path):
    return [
        (r.row, r.values, r.raw if r.problem else None, r.problem) for r in read_csv(path, "utf-8")
    ]


UNCLOSED = "has a quote that is never closed (its field would run into the next rows)"


def test_an_unclosed_quote_costs_its_own_row_only(tmp_path):
    """Without the check, the open quote swallows every later row into one field (and a
    balanced quote further down can even close it with the right field count)."""
    path = tmp_path / "log.csv"
    lines = ["query,product_id,title", 'shoes,p1,"Runner fast']
    lines += [
        f'q{i},p{i},"Title {i}, blue"' if i % 2 else f"q{i},p{i},Title {i}" for i in range(2, 40)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = _rows(str(path))
    assert rows[0] == (1, None, 'shoes,p1,"Runner fast', UNCLOSED)
    # Every later line is read as its own row, numbered on.
    assert len(rows) == len(lines) - 1
    assert [r[0] for r in rows] == list(range(1, len(lines)))
    assert all(r[3] is None for r in rows[1:])
    assert rows[1][1] == {"query": "q2", "product_id": "p2", "title": "Title 2"}
    assert rows[2][1] == {"query": "q3", "product_id": "p3", "title": "Title 3, blue"}


def test_an_unclosed_quote_on_the_last_row_is_dead_lettered(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text('query,title\nshoes,Runner\nboots,"Hiker\n', encoding="utf-8")
    assert _rows(str(path)) == [
        (1, {"query": "shoes", "title": "Runner"}, None, None),
        (2, None, 'boots,"Hiker', UNCLOSED),
    ]


def test_a_legal_multi_line_field_is_kept(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        'query,title,description\nshoes,Runner,"Light.\n\nWashable, too."\nboots,Hiker,x\n',
        encoding="utf-8",
    )
    assert _rows(str(path)) == [
        (
            1,
            {"query": "shoes", "title": "Runner", "description": "Light.\n\nWashable, too."},
            None,
            None,
        ),
        (2, {"query": "boots", "title": "Hiker", "description": "x"}, None, None),
    ]


def test_a_field_over_the_size_limit_is_one_dead_letter_and_rows_stay_numbered(tmp_path):
    import csv

    path = tmp_path / "log.csv"
    path.write_text(
        "query,title\nshoes,Runner\nsofa," + "x" * 5000 + ",more\nboots,Hiker\n", encoding="utf-8"
    )
    previous = csv.field_size_limit(1000)
    try:
        rows = _rows(str(path))
    finally:
        csv.field_size_limit(previous)
    assert [(r[0], r[1]) for r in rows] == [
        (1, {"query": "shoes", "title": "Runner"}),
        (2, None),
        (3, {"query": "boots", "title": "Hiker"}),
    ]
    assert rows[1][3] == "is not valid CSV: field larger than field limit (1000)"
    assert rows[1][2].startswith("sofa,xxx") and rows[1][2].endswith("... (5010 characters)")


def test_a_multi_line_field_with_a_line_of_the_header_width_is_one_row(tmp_path):
    """An inner line that would be a whole row on its own ("x,y,z" under a 3-column header)
    is still part of the field when the quote closes properly into a row of the header's
    width; a quote left open before such lines is still caught (rows 3 and 4)."""
    path = tmp_path / "log.csv"
    path.write_text(
        'query,title,description\nshoes,Runner,"Sizes:\nS,M,L\nall washable"\n'
        'boots,"Hiker,lamp,Lux,Oslo\nsofa,Oslo,"Grey, soft"\nmug,Luma,x\n',
        encoding="utf-8",
    )
    rows = _rows(str(path))
    assert rows == [
        (
            1,
            {"query": "shoes", "title": "Runner", "description": "Sizes:\nS,M,L\nall washable"},
            None,
            None,
        ),
        (2, None, 'boots,"Hiker,lamp,Lux,Oslo', UNCLOSED),
        (3, {"query": "sofa", "title": "Oslo", "description": "Grey, soft"}, None, None),
        (4, {"query": "mug", "title": "Luma", "description": "x"}, None, None),
    ]


def test_a_jsonl_line_nested_deeper_than_json_loads_reads_is_a_malformed_row(tmp_path):
    """json.loads stops at Python's recursion limit: such a line is its row's problem (and the
    up-front check of the first lines passes over it), not the run's."""
    from components.ingest import sources
    from contract import schema as S

    deep = '{"query": "shoes", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = tmp_path / "log.jsonl"
    path.write_text(deep + '\n{"query": "sofa"}\n', encoding="utf-8")
    records = list(read_jsonl(str(path), "utf-8"))
    assert [(r.row, r.values, r.problem) for r in records] == [
        (1, None, "is nested too deeply to read (arrays and objects inside each other)"),
        (2, {"query": "sofa"}, None),
    ]
    assert records[0].raw == deep
    with pytest.raises(sources.IngestError, match="required"):  # keys missing, no RecursionError
        sources.resolve_inputs(str(path), "auto", "utf-8", S.DEMO_SCHEMA)
