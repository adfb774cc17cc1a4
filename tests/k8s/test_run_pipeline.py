"""k8s/run_pipeline.py: the arguments it would submit, checked against the compiled package
before any server is contacted."""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import pytest
from click.testing import CliRunner
from k8s_testlib import ROOT

from components import resources
from k8s import run_pipeline as rp
from pipeline import compile_pipeline

GOLDEN = os.path.join(ROOT, "pipeline.yaml")
# Nothing listens on the discard port: a test that reached the network would fail there.
NO_SERVER = "http://127.0.0.1:9"


def test_arguments_are_converted_to_the_declared_types():
    parameters = rp.pipeline_parameters(GOLDEN)
    arguments = rp.build_arguments(
        parameters,
        [
            "max_epochs=4",
            "learning_rate=3e-4",
            "input_data=/mnt/mlpr/data/logs-*.csv.gz",
            'beam_pipeline_args=["--direct_num_workers=4"]',
            "accelerator_count=2",
            'accelerator_node_selector={"nvidia.com/gpu.product": "NVIDIA-L4"}',
            "model_name=mlpr=v2",  # everything after the first '=' is the value
        ],
        rp.DEFAULT_ARGUMENTS,
    )
    assert arguments == {
        "model_base": resources.DEFAULT_MODEL_BASE,
        "max_epochs": 4,
        "learning_rate": 0.0003,
        "input_data": "/mnt/mlpr/data/logs-*.csv.gz",
        "beam_pipeline_args": ["--direct_num_workers=4"],
        "accelerator_count": 2,
        "accelerator_node_selector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
        "model_name": "mlpr=v2",
    }
    assert rp.DEFAULT_ARGUMENTS == {"model_base": "/mnt/mlpr/serving"}


def test_booleans():
    parameters = {"flag": {"parameterType": "BOOLEAN"}}
    assert rp.build_arguments(parameters, ["flag=False"]) == {"flag": False}
    assert rp.build_arguments(parameters, ["flag=yes"]) == {"flag": True}
    with pytest.raises(ValueError, match="flag='maybe' is not true or false"):
        rp.build_arguments(parameters, ["flag=maybe"])


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("max_epochs=2.5", "max_epochs='2.5' is not an integer"),
        ("learning_rate=fast", "learning_rate='fast' is not a number"),
        ("accelerator_node_selector=[1]", "is not a JSON object \\(got a JSON list\\)"),
        ("beam_pipeline_args=--runner=x", "beam_pipeline_args='--runner=x' is not a JSON list"),
        ("acelerator_count=1", "no parameter 'acelerator_count'; it has: accelerator_count"),
        ("max_epochs", "'max_epochs' is not NAME=VALUE"),
        ("=4", "'=4' is not NAME=VALUE"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(assignment, message):
    with pytest.raises(ValueError, match=message):
        rp.build_arguments(rp.pipeline_parameters(GOLDEN), [assignment], rp.DEFAULT_ARGUMENTS)


def test_model_base_is_required_without_the_default():
    with pytest.raises(ValueError, match="required parameter\\(s\\) without a value: model_base"):
        rp.build_arguments(rp.pipeline_parameters(GOLDEN), [])


def test_cli_dry_run_prints_the_arguments_and_contacts_no_server():
    result = CliRunner().invoke(
        rp.main, ["--host", NO_SERVER, "--dry-run", "--param", "max_epochs=3"]
    )
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.startswith("Arguments: ")
    assert json.loads(line.removeprefix("Arguments: ")) == {
        "max_epochs": 3,
        "model_base": "/mnt/mlpr/serving",
    }


def test_cli_refuses_a_gpu_parameter_for_a_cpu_package(tmp_path):
    package = compile_pipeline(str(tmp_path / "pipeline-cpu.yaml"), gpus=0)
    result = CliRunner().invoke(
        rp.main, ["--host", NO_SERVER, "--package", package, "--param", "accelerator_count=1"]
    )
    assert result.exit_code == 2
    assert "the pipeline has no parameter 'accelerator_count'" in result.output


def test_version_names_carry_the_package_hash_and_the_time(tmp_path):
    when = dt.datetime(2026, 11, 22, 9, 30, 5, tzinfo=dt.UTC)
    name = rp.version_name(GOLDEN, when)
    assert re.fullmatch(r"mlpr-ranking [0-9a-f]{12} 2026-11-22T09:30:05Z", name), name
    other = tmp_path / "other.yaml"
    with open(GOLDEN, encoding="utf-8") as fh:
        other.write_text(fh.read() + "\n# changed\n")
    assert rp.version_name(str(other), when) != name
