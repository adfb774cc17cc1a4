"""The ESCI adapter and adapters as the pipeline's input ("<adapter>:<path>")."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from kfp import dsl

from components.ingest import adapters, job
from components.ingest.adapters import esci
from contract import schema as S

SAMPLE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "esci_sample" / "esci.csv"
ROOT = Path(__file__).resolve().parents[3]


def esci_frame(n_queries: int = 30) -> pd.DataFrame:
    """ESCI-format rows: every query judges four products, one per label (two as letters),
    plus one row of another locale."""
    rows = []
    for q in range(n_queries):
        for k, label in enumerate(("Exact", "S", "Complement", "I")):
            rows.append(
                {
                    "example_id": len(rows),
                    "query": f"query {q} boots",
                    "product_id": f"B{q:03d}{k}",
                    "product_locale": "us",
                    "esci_label": label,
                    "product_title": f"boots model {q} {k}" if k < 2 else f"socks {q}",
                    "product_description": "<b>Warm</b> <br/> and dry",
                    "product_brand": f"brand{k}",
                    "product_color": "black",
                }
            )
    rows.append({**rows[0], "product_locale": "jp", "product_id": "JP1"})
    return pd.DataFrame(rows)


def test_labels_become_grades_and_the_product_fields_are_kept():
    log = esci.simulate(esci_frame(), seed=0)
    assert len(log) == 120 and "JP1" not in set(log[S.PRODUCT_ID])  # us only
    by_id = log.set_index(S.PRODUCT_ID)
    assert by_id.loc["B0000", "relevance"] == 3.0  # Exact
    assert by_id.loc["B0001", "relevance"] == 2.0  # "S": Substitute
    assert by_id.loc["B0002", "relevance"] == 1.5  # Complement
    assert by_id.loc["B0003", "relevance"] == 1.0  # "I": Irrelevant
    assert by_id.loc["B0001", S.BRAND] == "brand1" and by_id.loc["B0001", S.COLOR] == "black"
    assert by_id.loc["B0001", S.DESCRIPTION] == "Warm and dry"  # HTML stripped
    assert (log[S.PRODUCT_TYPE] == "").all()
    assert (log[S.IMPRESSIONS] >= log[S.CLICKS]).all()
    assert (log[S.CLICKS] >= log[S.ADD_TO_CART]).all()
    assert (log[S.ADD_TO_CART] >= log[S.PURCHASES]).all()
    ctr = lambda d: d[S.CLICKS].sum() / d[S.IMPRESSIONS].sum()  # noqa: E731
    assert ctr(log[log["relevance"] == 3.0]) > 3 * ctr(log[log["relevance"] == 1.0])
    again = esci.simulate(esci_frame(), seed=0)
    pd.testing.assert_frame_equal(again, log)
    assert not esci.simulate(esci_frame(), seed=1)[S.CLICKS].equals(log[S.CLICKS])


def test_unknown_label_and_missing_columns_are_named(tmp_path):
    bad = esci_frame(2)
    bad.loc[5, "esci_label"] = "Great"
    with pytest.raises(ValueError, match=r"esci_label \['Great'\].*first at data row 6"):
        esci.simulate(bad)
    with pytest.raises(ValueError, match="no rows of locale 'de'"):
        esci.simulate(esci_frame(2), locale="de")
    path = tmp_path / "examples.csv"
    esci_frame(2).drop(columns=["esci_label"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['esci_label'\]"):
        esci.read_source(path)


def test_separate_products_file_is_joined(tmp_path):
    frame = esci_frame(3)
    product_columns = ["product_id", "product_locale", "product_title", "product_brand"]
    frame[["example_id", "query", "product_id", "product_locale", "esci_label"]].to_parquet(
        tmp_path / "examples.parquet"
    )
    frame[product_columns].to_csv(tmp_path / "products.csv", index=False)
    log = esci.simulate(
        esci.read_source(tmp_path / "examples.parquet", tmp_path / "products.csv"), seed=0
    )
    assert len(log) == 12
    assert log.set_index(S.PRODUCT_ID).loc["B0010", S.BRAND] == "brand0"


@pytest.mark.parametrize(
    "value, adapter, path",
    [
        ("homedepot:/data/train.csv.zip", "homedepot", "/data/train.csv.zip"),
        ("esci:rel/esci.csv", "esci", "rel/esci.csv"),
        ("gs://bucket/logs/*.csv", None, "gs://bucket/logs/*.csv"),
        ("/data/logs.csv", None, "/data/logs.csv"),
        ("C:/data/x.csv", None, "C:/data/x.csv"),
    ],
)
def test_input_data_names_an_adapter_or_a_path(value, adapter, path):
    found, source = adapters.parse_input(value)
    assert (found.name if found else None, source) == (adapter, path)


def test_adapter_with_no_file_is_an_error():
    with pytest.raises(ValueError, match="names the esci adapter but no file"):
        adapters.parse_input("esci:")


def test_ingest_step_runs_the_adapter_named_in_input_data(tmp_path):
    from components.ingest.component import ingest

    source = tmp_path / "esci.csv"
    esci_frame(40).to_csv(source, index=False)
    examples = dsl.Dataset(uri=str(tmp_path / "examples"))
    view = dsl.HTML(uri=str(tmp_path / "statistics"))
    ingest.python_func(examples=examples, statistics=view, input_data=f"esci:{source}")
    assert examples.metadata["rows_read"] == 160  # the us rows the adapter wrote
    assert "<h2>train: " in (tmp_path / "statistics").read_text()  # the HTML output
    assert examples.metadata["rows_dead_letter"] == 0
    schema = S.RawSchema.load(tmp_path / "examples" / "schema.json")
    assert schema.feature_names == esci.SCHEMA.feature_names
    with pytest.raises(SystemExit, match="homedepot adapter: input file '/no/such.zip' does not"):
        ingest.python_func(
            examples=dsl.Dataset(uri=str(tmp_path / "x")),
            statistics=dsl.HTML(uri=str(tmp_path / "x.html")),
            input_data="homedepot:/no/such.zip",
        )


@pytest.mark.skipif(not SAMPLE.exists(), reason=f"ESCI sample not found at {SAMPLE}")
def test_the_real_esci_sample_through_the_cli_and_ingest(tmp_path):
    out = tmp_path / "esci.csv"
    done = subprocess.run(
        [sys.executable, "-m", "components.ingest.adapters", "esci", "--input", str(SAMPLE), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote 200 rows (200 queries)" in done.stdout
    log = pd.read_csv(out, keep_default_na=False)
    assert (log[S.BRAND] != "").mean() > 0.9 and (log[S.COLOR] != "").mean() > 0.5
    assert not log[S.DESCRIPTION].str.contains("<b>").any()
    schema = S.RawSchema.load(tmp_path / "esci.schema.json")
    counts = job.run_ingest(str(out), str(tmp_path / "examples"), schema)
    assert counts.rows_read == 200 and counts.rows_dead_letter == 0
