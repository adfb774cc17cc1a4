"""The compiled pipeline matches the checked-in golden YAML (the file users upload)."""

import os

import yaml

from pipeline import compile_pipeline

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pipeline.yaml")


def _without_sdk_version(node):
    if isinstance(node, dict):
        return {k: _without_sdk_version(v) for k, v in node.items() if k != "sdkVersion"}
    if isinstance(node, list):
        return [_without_sdk_version(v) for v in node]
    return node


def test_compiled_pipeline_matches_golden(tmp_path):
    path = compile_pipeline(str(tmp_path / "pipeline.yaml"))
    with open(path) as fh:
        compiled = _without_sdk_version(yaml.safe_load(fh))
    with open(GOLDEN) as fh:
        golden = _without_sdk_version(yaml.safe_load(fh))
    assert compiled == golden, "pipeline.yaml is stale: regenerate it with ./dev compile"


def test_dag_shape_and_gate():
    with open(GOLDEN) as fh:
        spec = yaml.safe_load(fh)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest", "transform", "train", "evaluate", "condition-1"}
    assert tasks["transform"]["dependentTasks"] == ["ingest"]
    condition = tasks["condition-1"]
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true"
    )
    assert set(spec["components"]["comp-condition-1"]["dag"]["tasks"]) == {"push"}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert "isOptional" not in params["model_base"]  # where to push must be chosen
    assert params["encoder_preset"]["defaultValue"] == "tiny"
    assert params["beam_pipeline_args"]["parameterType"] == "LIST"
    # Every step runs in the project's image, with no pip install at start-up.
    from components.images import BASE_IMAGE

    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor["container"]
        assert container["image"] == BASE_IMAGE
        assert not any("pip install" in part for part in container["command"])
