"""A log with markets: ingest keeps the declared markets (in lower case) and dead-letters the
others, in the row checks and in the columnar checks alike."""

from __future__ import annotations

import csv
import json

import pytest
from ingest_testlib import HEADER, good_row, read_split

from components.ingest import errors
from components.ingest.job import read_dead_letters, run_ingest
from contract import schema as S

MARKETS = ("us", "DE")
SCHEMA = S.RawSchema(S.DEMO_SCHEMA.ranking_features, markets=MARKETS)
ROWS = [
    good_row(product_id="P1", market="us"),
    good_row(product_id="P2", market="  De "),
    good_row(product_id="P3", market="fr"),
    good_row(product_id="P4", market=""),
]


def _write(path, rows, header=(*HEADER, S.MARKET)):
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(c, "") for c in header])
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_declared_markets_are_kept_and_others_dead_lettered(tmp_path, fmt):
    if fmt == "csv":
        source = _write(tmp_path / "log.csv", ROWS)
    else:
        source = tmp_path / "log.jsonl"
        source.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    counts = run_ingest(str(source), str(tmp_path / "out"), SCHEMA, max_bad_share=1.0)
    assert counts.rows_kept == 2 and counts.rows_dead_letter == 2
    assert counts.dead_letter_by_reason[errors.UNKNOWN_MARKET] == 1
    assert counts.dead_letter_by_reason[errors.MISSING_VALUE] == 1
    letters = {d["raw"]["product_id"]: d for d in read_dead_letters(str(tmp_path / "out"))}
    assert letters["P3"]["field"] == S.MARKET
    assert letters["P3"]["message"] == (
        f"row 3 of {source.name}: field 'market' is 'fr', not one of the schema's markets "
        "['us', 'de']"
    )
    assert letters["P4"]["reason"] == errors.MISSING_VALUE
    kept = [r for split in S.SPLITS for r in read_split(tmp_path / "out", split, SCHEMA)]
    assert sorted((r[S.PRODUCT_ID], r[S.MARKET]) for r in kept) == [("P1", "us"), ("P2", "de")]


def test_a_log_without_the_declared_market_column_is_refused(tmp_path):
    source = _write(tmp_path / "log.csv", [good_row()], header=HEADER)
    with pytest.raises(errors.IngestError, match="market"):
        run_ingest(str(source), str(tmp_path / "out"), SCHEMA)


def test_markets_in_a_schema_file():
    schema = S.RawSchema.from_dict(
        {"ranking_features": [{"name": "price"}], "markets": ["US", "de"]}
    )
    assert schema.markets == ("us", "de")
    assert S.MARKET in schema.required_columns()
    assert S.RawSchema.from_dict(json.loads(schema.to_json())) == schema
    assert S.MARKET not in S.DEMO_SCHEMA.required_columns()
    with pytest.raises(ValueError, match="differ in lower case"):
        S.RawSchema(S.DEMO_SCHEMA.ranking_features, markets=("us", "US"))
    with pytest.raises(ValueError, match="markets"):
        S.RawSchema.from_dict({"ranking_features": [{"name": "price"}], "markets": "us"})
