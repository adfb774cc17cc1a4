"""The kfp component: compiles, and its function ingests the generated demo into the artifact."""

from __future__ import annotations

import json

import yaml
from kfp import compiler
from kfp.dsl import Dataset

from components.images import BASE_IMAGE
from components.ingest import demo_data
from components.ingest.component import ingest
from contract import layout


def test_compiles_with_documented_inputs(tmp_path):
    path = tmp_path / "ingest.yaml"
    compiler.Compiler().compile(ingest, str(path))
    spec = yaml.safe_load(path.read_text())
    params = spec["components"]["comp-ingest"]["inputDefinitions"]["parameters"]
    assert set(params) == {
        "input_data",
        "input_format",
        "input_encoding",
        "schema_uri",
        "demo_queries",
        "seed",
        "funnel_policy",
        "max_bad_share",
        "beam_pipeline_args",
    }
    assert all(p.get("description") for p in params.values())
    assert params["demo_queries"]["defaultValue"] == 600
    executor = spec["deploymentSpec"]["executors"]["exec-ingest"]["container"]
    assert executor["image"] == BASE_IMAGE
    assert ingest.component_spec.description.startswith(
        "Ingest a raw search engagement log into train/eval/test TFRecords."
    )
    assert "dead_letter/" in ingest.component_spec.description


def test_demo_run_fills_the_artifact(tmp_path):
    examples = Dataset(name="examples", uri=str(tmp_path / "examples"), metadata={})
    ingest.python_func(examples=examples, demo_queries=30, seed=4)
    log = demo_data.generate(30, seed=4)
    counts = json.loads((tmp_path / "examples" / layout.COUNTS_FILE).read_text())
    assert counts["rows_read"] == len(log) == examples.metadata["rows_read"]
    assert examples.metadata["rows_kept"] == counts["rows_kept"] > 0
    assert examples.metadata["rows_dead_letter"] == 0
    assert (
        sum(examples.metadata[f"{s}_rows"] for s in ("train", "eval", "test"))
        == counts["rows_kept"]
    )
    assert (tmp_path / "examples" / "demo_input" / "demo.csv").exists()
    for split in ("train", "eval", "test"):
        assert list((tmp_path / "examples" / split).glob(f"data-*{layout.RECORD_SUFFIX}"))
