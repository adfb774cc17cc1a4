"""The kfp component compiles with its documented inputs (its body: test_ingest_step.py)."""

from __future__ import annotations

import yaml
from kfp import compiler

from components.images import BASE_IMAGE
from components.ingest.component import ingest


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
    outputs = spec["components"]["comp-ingest"]["outputDefinitions"]["artifacts"]
    assert {k: v["artifactType"]["schemaTitle"] for k, v in outputs.items()} == {
        "examples": "system.Dataset",
        "statistics": "system.HTML",
    }
    assert params["demo_queries"]["defaultValue"] == 600
    executor = spec["deploymentSpec"]["executors"]["exec-ingest"]["container"]
    assert executor["image"] == BASE_IMAGE
    description = ingest.component_spec.description
    assert description.startswith("Ingest a raw engagement log into train/eval/test Parquet splits")
    assert "components/ingest/step.py" in description  # where the step is documented
