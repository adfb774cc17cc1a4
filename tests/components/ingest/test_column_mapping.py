"""A user's export with its own column names, mapped by the schema file's "columns"."""

import json

import pytest

from components.ingest import demo_data, job
from components.ingest.errors import IngestError
from contract import schema as S

RENAMED = {S.QUERY: "search_term", S.PRODUCT_ID: "sku", S.CLICKS: "n_clicks", "price": "price_eur"}


def mapped_schema() -> S.RawSchema:
    data = json.loads(S.DEMO_SCHEMA.to_json())
    data["columns"] = RENAMED
    return S.RawSchema.from_dict(data)


def test_schema_file_round_trips_the_mapping():
    schema = mapped_schema()
    assert S.RawSchema.from_dict(json.loads(schema.to_json())) == schema
    assert schema.source_name(S.QUERY) == "search_term" and schema.source_name(S.TITLE) == S.TITLE
    row = {"search_term": "boots", "sku": "p1", S.TITLE: "red boots", "query": "stray column"}
    assert schema.rename(row) == {S.QUERY: "boots", S.PRODUCT_ID: "p1", S.TITLE: "red boots"}


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"qury": "search_term"}, "maps 'search_term' to 'qury', which is not a column"),
        ({S.QUERY: "x", S.TITLE: "x"}, "must map each column once"),
        ({S.QUERY: ""}, "must be a column name"),
        (["query"], "'columns' must be an object"),
    ],
)
def test_bad_mappings_are_named(columns, message):
    data = json.loads(S.DEMO_SCHEMA.to_json()) | {"columns": columns}
    with pytest.raises(ValueError, match=message):
        S.RawSchema.from_dict(data)


def test_unknown_schema_keys_are_refused():
    with pytest.raises(ValueError, match=r"unknown keys \['colums'\]"):
        S.RawSchema.from_dict(json.loads(S.DEMO_SCHEMA.to_json()) | {"colums": {}})


def test_a_renamed_export_ingests_like_the_original(tmp_path):
    frame = demo_data.generate(40, seed=3)
    original = demo_data.write(frame, tmp_path / "original.csv")
    renamed = tmp_path / "export.parquet"
    frame.rename(columns={k: v for k, v in RENAMED.items()}).to_parquet(renamed)
    expected = job.run_ingest(str(original), str(tmp_path / "a"), S.DEMO_SCHEMA)
    got = job.run_ingest(str(renamed), str(tmp_path / "b"), mapped_schema())
    assert got.to_dict() == expected.to_dict()
    assert got.rows_kept > 0 and got.rows_dead_letter == 0


def test_a_missing_mapped_column_names_the_export_column(tmp_path):
    frame = demo_data.generate(5, seed=0).drop(columns=[S.CLICKS])
    path = demo_data.write(frame, tmp_path / "export.csv")
    with pytest.raises(
        IngestError,
        match=r"missing required column\(s\): search_term \(for query\), sku \(for product_id\), n_clicks \(for clicks\)",
    ):
        job.run_ingest(str(path), str(tmp_path / "out"), mapped_schema())
