"""JSONL in blocks: pyarrow's JSON reader gives exactly the row reader's rows (`json.loads`), and
the row reader takes over every piece that pyarrow would read otherwise.

Each comparison reads one file twice: `blocks.read_blocks` with the schema (pyarrow where it
agrees, the row reader elsewhere) and without it (the row reader only, as before), and
compares the records (row, values with their types, raw, problem) and what the column and row
checks decide of them (kept values bit for bit, dead letters field for field, counts).
"""

from __future__ import annotations

import collections
import gzip
import json
import random

import numpy as np
import pytest
from ingest_testlib import good_row

from components.ingest import blocks, columnar, json_blocks
from contract import schema as S

NUMBERS = (*S.DEMO_SCHEMA.funnel, S.POSITION, *S.DEMO_SCHEMA.feature_names)
MAPPED = S.RawSchema(  # export names differ from the log's, and the log has markets
    ranking_features=S.DEMO_SCHEMA.ranking_features,
    columns=(("clicks", "click_count"), ("query", "search_term")),
    markets=("de", "us"),
)


def row_text(schema: S.RawSchema = S.DEMO_SCHEMA, **overrides: str) -> str:
    """A good row as a JSON writer writes it (numbers typed), keys by the export's names, with
    values replaced by JSON text (keys by the log's names): `row_text(clicks="3.0")` writes
    `"clicks": 3.0`, `id` is the product id's."""
    values = dict(good_row())
    if schema.markets:
        values[S.MARKET] = "DE"
    fields = {k: (v if k in NUMBERS else json.dumps(v)) for k, v in values.items()}
    fields[S.PRODUCT_ID] = overrides.pop("id", '"P1"')
    fields.update(overrides)
    out = {schema.source_name(k): v for k, v in fields.items()}
    if schema.columns:
        out[S.QUERY] = '"a column the schema shadows"'
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in out.items()) + "}"


def good_lines(n: int, schema: S.RawSchema = S.DEMO_SCHEMA, start: int = 0) -> list[str]:
    return [row_text(schema, id=json.dumps(f"P{i}")) for i in range(start, start + n)]


LONG = "9" * 5000


def odd_lines(schema: S.RawSchema) -> dict[str, str]:
    """name -> an odd line (or two, joined by a line end) as it stands in the file."""

    def row(**overrides: str) -> str:
        return row_text(schema, **overrides)

    def key(column: str) -> str:
        return json.dumps(schema.source_name(column))

    return {
        "invalid JSON": "{" + key(S.QUERY) + ': "shoes", ',
        "trailing comma": row()[:-1] + ", }",
        "single quotes": "{'query': 'shoes'}",
        "a comment": row() + " // seen",
        "a JSON list": "[1, 2, 3]",
        "a JSON string": '"shoes"',
        "a JSON number": "3",
        "JSON null": "null",
        "JSON true": "true",
        "two objects on a line": row(id='"A"') + " " + row(id='"B"'),
        "an object and null on a line": row(id='"A"') + " null " + row(id='"B"'),
        "an object over two lines": row().replace(', "title"', ',\n"title"'),
        "a carriage return inside an object": row().replace(', "title"', ',\r"title"'),
        "a carriage return between objects": row(id='"A"') + "\r" + row(id='"B"'),
        "a blank line": "",
        "a line of spaces": "  \t ",
        "a line of other white space": "\u3000\xa0\x0c",
        "spaces around an object": "  " + row() + " \t",
        "a form feed before an object": "\x0c" + row(),
        "a key of the schema twice": row(clicks="1")[:-1] + f", {key(S.CLICKS)}: 99}}",
        "a key of the schema twice, escaped": row()[:-1] + ', "\\u0074itle": "Lamp"}',
        "another key twice": row()[:-1] + ', "campaign": "autumn"}',
        "a nested value in a text column": row(title='{"en": "Sofa"}'),
        "a list in a text column": row(brand='["Arbor"]'),
        "a nested value in another key": row(campaign='{"a": [1, {"b": null}, []]}'),
        "a number as the product id": row(id="12345"),
        "a float as the title": row(title="1.50"),
        "a boolean as the title": row(title="true"),
        "a count as text": row(clicks='"3"'),
        "a count as text with spaces": row(clicks='" 12"'),
        "a feature as text": row(price='"89.5"'),
        "a boolean count": row(clicks="true"),
        "a float count": row(impressions="100.0", clicks="1e1"),
        "a fractional count": row(clicks="2.5"),
        "a negative count": row(clicks="-1"),
        "a count beyond int64": row(impressions="99999999999999999999"),
        "a negative count beyond int64": row(clicks="-99999999999999999999"),
        "counts of 2^53 + 1": row(impressions="9007199254740993", clicks="9007199254740993"),
        "a count of 5,000 digits": row(impressions=LONG),
        "a feature beyond a float": row(price="1e400"),
        "an integer feature beyond a float": row(price="1" + "0" * 400),
        "tiny features": row(discount="1e-400", rating="4.9e-324"),
        "NaN": row(position="NaN"),
        "NaN in a required feature": row(price="NaN"),
        "-NaN": row(position="-NaN"),
        "Infinity": row(position="Infinity"),
        "-Infinity": row(price="-Infinity"),
        "Inf": row(price="Inf"),
        "-Inf": row(position="-Inf"),
        "NaN in another key": row(campaign="NaN"),
        "-NaN in another key": row(campaign="[1, -NaN]"),
        "Inf in a title": row(title='"Infinity scarf, size:Inf, NaN-free"'),
        "an integer -0": row(price="-0", position="-0"),
        "a float -0.0": row(price="-0.0"),
        "a count -0": row(purchases="-0"),
        "null values": row(brand="null", position="null"),
        "a required feature null": row(price="null"),
        "a required key absent": "{" + key(S.QUERY) + ': "shoes", "product_id": "P9"}',
        "an empty object": "{}",
        "a byte order mark on a later line": "\ufeff" + row(),
        "a lone surrogate escape": row(title='"\\ud800"'),
        "a lone low surrogate escape": row(title='"sofa \\udc00"'),
        "a surrogate pair escape": row(title='"\\ud83d\\ude00 sofa"'),
        "a NUL escape": row(title='"a\\u0000b"'),
        "a raw tab in a string": row(title='"a\tb"'),
        "a raw DEL and NEL in a string": row(title='"a\x7fb\x85c"'),
        "a raw line separator in a string": row(title='"a\u2028b\u2029c"'),
        "escapes": row(title='"\\"Oslo\\" \\/ \\\\ \\b\\f\\n\\r\\t \\u00e9"'),
        "an escaped key": row()[:-1] + ', "\\u0071uery2": 1}',
        "an unknown market": row(market='"fr"'),
        "a market as a number": row(market="7"),
        "leading zeros": row(clicks="007"),
        "a plus sign": row(clicks="+3"),
        "a bare fraction": row(price=".5"),
        "a bare point": row(price="1."),
        "hexadecimal": row(clicks="0x10"),
        "a funnel violation": row(clicks="101"),
        "too few impressions": row(impressions="5", clicks="1", add_to_cart="0", purchases="0"),
        "out of range": row(rating="7.5", discount="-0.5"),
        "deep nesting": row(campaign="[" * 200 + "]" * 200),
        "nesting deeper than json.loads reads": row(campaign="[" * 5000 + "]" * 5000),
        "many brackets, nested shallow": row(campaign="[" + ", ".join(["[{}]"] * 200) + "]"),
        "a long title": row(title=json.dumps("sofa " * 3000)),
    }


ODD = odd_lines(S.DEMO_SCHEMA)
# The odd lines that pyarrow still reads (their piece stays a table): the row checks read the
# rows that they do not take again, with json.loads.
READ_BY_PYARROW = {
    "another key twice",
    "an escaped key",
    "a nested value in another key",
    "a float count",
    "a fractional count",
    "a negative count",
    "a count beyond int64",
    "a negative count beyond int64",
    "counts of 2^53 + 1",
    "a count of 5,000 digits",
    "an integer feature beyond a float",
    "tiny features",
    "null values",
    "a required feature null",
    "a required key absent",
    "an empty object",
    "a surrogate pair escape",
    "a NUL escape",
    "a raw DEL and NEL in a string",
    "a raw line separator in a string",
    "escapes",
    "an unknown market",
    "a funnel violation",
    "too few impressions",
    "out of range",
    "deep nesting",
    "a long title",
}
READ_BY_PYARROW_WITHOUT_MARKETS = {"a market as a number"}  # a key the schema does not read


def write(path, lines: list[str], newline: str = "\n", encoding: str = "utf-8") -> str:
    path.write_bytes((newline.join(lines) + newline).encode(encoding, "surrogateescape"))
    return str(path)


def as_text(value) -> str:
    """A value as JSON text that tells 1 from 1.0, -0.0 from 0.0 and keeps NaN (NaN != NaN)."""
    return json.dumps(value, default=repr)


def records_of(found: list[blocks.RowBlock]) -> list[str]:
    return [as_text(block.record(i)._asdict()) for block in found for i in range(len(block))]


def decided(found: list[blocks.RowBlock], schema: S.RawSchema, policy: str = "reject"):
    """What the checks decide of the blocks: per split the kept columns (floats bit for bit),
    the dead letters and the counts."""
    kept: dict[str, dict[str, list]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    dead, events = [], collections.Counter()
    for block in found:
        outcome = columnar.check_block(block, schema, "utf-8", policy, {}, [])
        for part in outcome.kept:
            for column, values in part.columns.items():
                kept[part.split][column].extend(
                    values if isinstance(values, list) else np.asarray(values).tolist()
                )
        dead.extend(as_text(d) for d in outcome.dead_letters)
        events.update(outcome.events)
    kept_bits = {
        split: {c: np.asarray(v).tobytes() if c in NUMBERS else v for c, v in columns.items()}
        for split, columns in kept.items()
    }
    return kept_bits, dead, +events


def both_ways(path: str, schema: S.RawSchema, encoding: str = "utf-8"):
    """(blocks with pyarrow, blocks of the row reader only)."""
    fast = list(blocks.read_blocks(path, "jsonl", encoding, schema=schema))
    rows = list(blocks.read_blocks(path, "jsonl", encoding))
    assert all(b.records is not None for b in rows)
    return fast, rows


def assert_same(fast, rows, schema: S.RawSchema) -> None:
    assert records_of(fast) == records_of(rows)
    for policy in ("reject", "clip"):
        assert decided(fast, schema, policy) == decided(rows, schema, policy)


@pytest.mark.parametrize("schema", [S.DEMO_SCHEMA, MAPPED], ids=["demo", "mapped"])
@pytest.mark.parametrize("case", sorted(ODD))
def test_an_odd_line_reads_as_the_row_reader_reads_it(tmp_path, monkeypatch, schema, case):
    """The odd line between good ones, pieces of a few lines each: pyarrow reads the pieces
    before and after it, and the records and decisions are the row reader's."""
    monkeypatch.setattr(blocks, "_JSONL_BLOCK_BYTES", 2000)  # pieces of a few lines
    lines = good_lines(12, schema) + [odd_lines(schema)[case]] + good_lines(12, schema, start=20)
    path = write(tmp_path / "log.jsonl", lines)
    fast, rows = both_ways(path, schema)
    assert_same(fast, rows, schema)
    assert fast[0].table is not None and fast[-1].table is not None  # pyarrow reads on
    if case in READ_BY_PYARROW or (case in READ_BY_PYARROW_WITHOUT_MARKETS and not schema.markets):
        holder = next(b for b in fast if 13 in b.rows())
        assert holder.table is not None, "pyarrow should read this piece"
    else:
        assert any(b.records is not None for b in fast), "the row reader should read this piece"


def test_a_clean_file_is_read_by_pyarrow_alone(tmp_path):
    path = write(tmp_path / "log.jsonl", good_lines(3000))
    fast, rows = both_ways(path, S.DEMO_SCHEMA)
    assert len(fast) > 1 and all(b.table is not None and b.records is None for b in fast)
    assert [b.first_row for b in fast] == [1] + list(np.cumsum([len(b) for b in fast])[:-1] + 1)
    assert_same(fast, rows, S.DEMO_SCHEMA)
    _, dead, events = decided(fast, S.DEMO_SCHEMA)
    assert dead == [] and events["rows_kept"] == 3000


def test_without_a_schema_the_row_reader_reads_jsonl(tmp_path):
    path = write(tmp_path / "log.jsonl", good_lines(5))
    assert all(b.records is not None for b in blocks.read_blocks(path, "jsonl", "utf-8"))


@pytest.mark.parametrize("rows", [1, 2, 7, 60, 400])
@pytest.mark.parametrize("piece", [100, 700, 4096, 1 << 20])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_good_files_of_several_sizes_cross_pieces_unchanged(
    tmp_path, monkeypatch, rows, piece, newline
):
    monkeypatch.setattr(blocks, "_JSONL_BLOCK_BYTES", piece)
    path = write(tmp_path / "log.jsonl", good_lines(rows), newline=newline)
    fast, by_rows = both_ways(path, S.DEMO_SCHEMA)
    assert all(b.table is not None for b in fast)
    assert sum(len(b) for b in fast) == rows
    assert_same(fast, by_rows, S.DEMO_SCHEMA)


def test_a_last_line_without_a_line_end(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(good_lines(5)), encoding="utf-8")
    fast, rows = both_ways(str(path), S.DEMO_SCHEMA)
    assert all(b.table is not None for b in fast)
    assert_same(fast, rows, S.DEMO_SCHEMA)


@pytest.mark.parametrize(
    "prefix, newline, end, first_by_pyarrow",
    [
        pytest.param(b"\xef\xbb\xbf", "\n", "\n", True, id="a byte order mark"),
        pytest.param(b"\xef\xbb\xbf" * 2, "\n", "\n", True, id="two byte order marks"),
        # pyarrow crashes on a first value null (apache/arrow#47409): never given one
        pytest.param(b"null\n", "\n", "\n", False, id="a first line null"),
        pytest.param(b"\n", "\n", "\n", False, id="a first line blank"),
        pytest.param(b"", "\r", "\r", False, id="lone carriage returns"),
        pytest.param(b"", "\n", "\r", True, id="a carriage return at the end"),
    ],
)
def test_file_starts_and_line_ends(tmp_path, monkeypatch, prefix, newline, end, first_by_pyarrow):
    monkeypatch.setattr(blocks, "_JSONL_BLOCK_BYTES", 1500)
    path = tmp_path / "log.jsonl"
    path.write_bytes(prefix + (newline.join(good_lines(10)) + end).encode())
    fast, rows = both_ways(str(path), S.DEMO_SCHEMA)
    assert_same(fast, rows, S.DEMO_SCHEMA)
    assert (fast[0].table is not None) == first_by_pyarrow


@pytest.mark.parametrize(
    "encoding, title, pyarrow_reads",
    [
        ("utf-8", "Café Oslo \u2603", True),
        ("utf-8-sig", "Café Oslo", True),
        ("iso-8859-1", "Café Oslo", True),  # written as UTF-8 for pyarrow
        ("utf-16", "Café Oslo \u2603", True),
        ("cp1252", "Caf\udc81 Oslo", False),  # 0x81 is no cp1252 character
        ("utf-8", "Caf\udce9 Oslo", False),  # a Latin-1 byte in a UTF-8 file
    ],
)
def test_encodings(tmp_path, monkeypatch, encoding, title, pyarrow_reads):
    """pyarrow reads UTF-8 only: it reads the decoded text written as UTF-8; bytes invalid in
    the encoding leave their piece to the row reader (an invalid_encoding dead letter)."""
    monkeypatch.setattr(blocks, "_JSONL_BLOCK_BYTES", 1500)
    lines = good_lines(6) + [row_text(title=json.dumps(title, ensure_ascii=False))]
    lines += good_lines(6, start=10)
    path = write(tmp_path / "log.jsonl", lines, encoding=encoding)
    fast = list(blocks.read_blocks(path, "jsonl", encoding, schema=S.DEMO_SCHEMA))
    rows = list(blocks.read_blocks(path, "jsonl", encoding))
    assert_same(fast, rows, S.DEMO_SCHEMA)
    holder = next(b for b in fast if 7 in b.rows())
    assert (holder.table is not None) == pyarrow_reads
    _, dead, _ = decided(fast, S.DEMO_SCHEMA)
    assert [json.loads(d)["reason"] for d in dead] == (
        [] if pyarrow_reads else ["invalid_encoding"]
    )


def test_a_compressed_file(tmp_path):
    lines = (
        good_lines(50) + [ODD["a count as text"], ODD["invalid JSON"]] + good_lines(50, start=60)
    )
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    fast, rows = both_ways(str(path), S.DEMO_SCHEMA)
    assert_same(fast, rows, S.DEMO_SCHEMA)


def test_pyarrow_reads_on_after_an_odd_line(tmp_path, monkeypatch):
    """An odd line costs the speed of its piece only: the row reader reads that piece, line by
    line, and pyarrow the pieces before and after it."""
    monkeypatch.setattr(blocks, "_JSONL_BLOCK_BYTES", 3000)
    lines = good_lines(200)
    lines[50] = ODD["a count as text"]
    lines[150] = ODD["invalid JSON"]
    path = write(tmp_path / "log.jsonl", lines)
    fast, rows = both_ways(path, S.DEMO_SCHEMA)
    assert_same(fast, rows, S.DEMO_SCHEMA)
    by_rows = [b for b in fast if b.records is not None]
    assert len(by_rows) == 2 and sum(len(b) for b in by_rows) < 20
    assert [r for b in by_rows for r in b.rows() if r in (51, 151)] == [51, 151]
    assert sum(len(b) for b in fast) == 200


def _number_texts(rng: random.Random) -> str:
    """A number as JSON writers write it: shortest repr, 17 digits, exponents, long decimals."""
    value = rng.choice([rng.uniform(0, 1), rng.lognormvariate(3, 4), rng.random() * 1e-300])
    return rng.choice(
        [repr(value), f"{value:.17g}", f"{value:.3e}", f"{value:.30f}", str(rng.randint(0, 2**60))]
    )


@pytest.mark.parametrize("seed", range(12))
def test_random_files_read_alike(tmp_path, monkeypatch, seed):
    """Random files: good rows with random numbers, odd lines at random places, random line
    ends and piece sizes; both readers give the same records and decisions."""
    rng = random.Random(seed)
    monkeypatch.setattr(blocks, "_JSONL_BLOCK_BYTES", rng.choice([500, 2000, 9000, 1 << 20]))
    lines = []
    for i in range(rng.randint(20, 300)):
        if rng.random() < 0.05:
            lines.append(ODD[rng.choice(sorted(ODD))])
            continue
        numbers = {
            name: _number_texts(rng)
            for name in ("price", "rating", "lexical_score", "discount", S.POSITION)
        }
        lines.append(row_text(id=json.dumps(f"P{i}"), **numbers))
    newline = rng.choice(["\n", "\r\n"])
    path = write(tmp_path / "log.jsonl", lines, newline=newline)
    fast, rows = both_ways(path, S.DEMO_SCHEMA)
    assert_same(fast, rows, S.DEMO_SCHEMA)


def test_arrow_schema_follows_the_exports_names():
    schema = json_blocks.arrow_schema(MAPPED)
    assert schema.field("search_term").type == "string"
    assert schema.field("click_count").type == "double"
    assert schema.field(S.MARKET).type == "string"
    assert S.QUERY not in schema.names and S.CLICKS not in schema.names
    swapped = S.RawSchema(
        ranking_features=S.DEMO_SCHEMA.ranking_features, columns=(("query", "title"),)
    )
    names = json_blocks.arrow_schema(swapped).names
    assert names.count("title") == 1 and S.QUERY not in names  # "title" is the query


def test_the_ingest_job_writes_the_same_with_and_without_pyarrow(tmp_path, monkeypatch):
    """The whole job on a JSONL log with odd lines, a repeated pair and a lone surrogate in a
    query: splits, counts.json, statistics and dead letters are those of the row reader alone
    (`json_blocks.read_lines` switched off), and pyarrow read most of the rows."""
    from ingest_testlib import read_all_splits

    from components.ingest import statistics
    from components.ingest.job import read_dead_letters, run_ingest
    from contract import layout

    monkeypatch.setattr(blocks, "_JSONL_BLOCK_BYTES", 20_000)
    lines = [
        row_text(id=json.dumps(f"P{i}"), query=json.dumps(f"query {i // 15}")) for i in range(900)
    ]
    for at, case in ((40, "a count as text"), (400, "-NaN"), (700, "a JSON list")):
        lines.insert(at, ODD[case])
    lines[500] = lines[10]  # a repeated pair, in a piece that pyarrow reads
    lines[600] = row_text(id='"P600"', query='"shoes \\ud800"')
    path = write(tmp_path / "log.jsonl", lines)

    taken = []
    read_lines = json_blocks.read_lines

    def counted(text, schema):
        read = read_lines(text, schema)
        taken.append(0 if read is None else read[0].num_rows)
        return read

    monkeypatch.setattr(json_blocks, "read_lines", counted)
    fast = tmp_path / "fast"
    run_ingest(str(path), str(fast), S.DEMO_SCHEMA)
    monkeypatch.setattr(json_blocks, "read_lines", lambda text, schema: None)
    rows = tmp_path / "rows"
    run_ingest(str(path), str(rows), S.DEMO_SCHEMA)

    assert sum(taken) > 0.7 * 2 * len(lines)  # both passes (duplicates, rows) read by pyarrow
    for name in (layout.COUNTS_FILE, statistics.STATISTICS_FILE):
        assert (fast / name).read_bytes() == (rows / name).read_bytes(), name
    assert read_dead_letters(str(fast)) == read_dead_letters(str(rows))
    reasons = [(d["row"], d["reason"]) for d in read_dead_letters(str(fast))]
    assert reasons == [  # row 41's count "3" is a count: kept
        (401, "malformed_row"),  # -NaN, which json.loads does not take
        (501, "duplicate_pair"),
        (601, "invalid_encoding"),
        (701, "malformed_row"),
    ]
    assert read_all_splits(fast) == read_all_splits(rows)
