"""The compiled pipeline matches the checked-in golden YAML (the file users upload).

The YAML holds two documents: the pipeline spec and, after it, the Kubernetes platform spec
(tolerations, node selectors, volume mounts) that kfp-kubernetes adds.
"""

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
        compiled = _without_sdk_version(list(yaml.safe_load_all(fh)))
    with open(GOLDEN) as fh:
        golden = _without_sdk_version(list(yaml.safe_load_all(fh)))
    assert compiled == golden, "pipeline.yaml is stale: regenerate it with ./dev compile"


def _documents(path: str) -> tuple[dict, dict]:
    """(pipeline spec, Kubernetes executor configs by executor; {} without a platform spec)."""
    with open(path) as fh:
        docs = list(yaml.safe_load_all(fh))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if docs[1:] else {}
    return docs[0], platform


def test_dag_shape_and_gate():
    spec, _ = _documents(GOLDEN)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest", "transform", "pretrain", "train", "evaluate", "condition-1"}
    assert tasks["transform"]["dependentTasks"] == ["ingest"]
    condition = tasks["condition-1"]
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true"
    )
    assert set(spec["components"]["comp-condition-1"]["dag"]["tasks"]) == {"push"}
    # Train takes the pretrain step's encoder; that step is switched by pretrain_encoder.
    encoder = tasks["train"]["inputs"]["artifacts"]["pretrained_encoder"]["taskOutputArtifact"]
    assert encoder == {"outputArtifactKey": "encoder", "producerTask": "pretrain"}
    assert tasks["pretrain"]["inputs"]["parameters"]["enabled"] == {
        "componentInputParameter": "pretrain_encoder"
    }
    assert (
        spec["root"]["inputDefinitions"]["parameters"]["pretrain_encoder"]["defaultValue"] is False
    )
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert "isOptional" not in params["model_base"]  # where to push must be chosen
    # The pretrained encoder, frozen (its outputs cached), is the default.
    assert params["encoder_preset"]["defaultValue"] == "all-minilm-l6-v2"
    assert params["fine_tune_layers"]["defaultValue"] == "0"
    assert params["beam_pipeline_args"]["parameterType"] == "LIST"
    # The gate: floors and allowed drops per metric or task/metric, significance, force-push.
    assert params["metric_floors"]["parameterType"] == "STRUCT"
    assert params["max_drop_by_metric"]["defaultValue"] == {}
    assert params["champion_significance"]["defaultValue"] == "better"
    assert params["force_push"]["defaultValue"] is False
    evaluate_inputs = spec["root"]["dag"]["tasks"]["evaluate"]["inputs"]["parameters"]
    assert evaluate_inputs["force_push"] == {"componentInputParameter": "force_push"}
    # Every step runs in the project's image, with no pip install at start-up.
    from components.images import BASE_IMAGE

    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor["container"]
        assert container["image"] == BASE_IMAGE
        assert not any("pip install" in part for part in container["command"])


def test_cli_architecture_choices_match_the_model_registry():
    from click.testing import CliRunner

    from local.run_pipeline import main
    from model.architectures import ARCHITECTURES

    help_text = CliRunner().invoke(main, ["--help"], terminal_width=200).output
    choices = help_text.split("--architecture [", 1)[1].split("]", 1)[0]
    assert sorted(choices.split("|")) == sorted([*ARCHITECTURES, "xgboost"])


# What each executor requests (components/resources.py), by step.
_STEPS = {"ingest": "INGEST", "transform": "TRANSFORM", "train": "TRAIN", "evaluate": "EVALUATE"}
_STEPS |= {"push": "PUSH", "pretrain": "PRETRAIN"}


def _tasks(spec: dict) -> dict:
    tasks = dict(spec["root"]["dag"]["tasks"])
    tasks |= spec["components"]["comp-condition-1"]["dag"]["tasks"]
    return tasks


def test_every_step_requests_cpu_memory_and_says_whether_it_caches():
    from components import resources

    spec, _ = _documents(GOLDEN)
    executors = spec["deploymentSpec"]["executors"]
    tasks = _tasks(spec)
    for step, constant in _STEPS.items():
        wanted = getattr(resources, constant)
        requested = executors[f"exec-{step}"]["container"]["resources"]
        assert requested["resourceCpuRequest"] == wanted.cpu
        assert requested["resourceMemoryRequest"] == wanted.memory
        assert tasks[step]["cachingOptions"].get("enableCache", False) is wanted.cache
    # Evaluate compares with the served model and push writes a version: never from cache.
    assert [s for s in _STEPS if getattr(resources, _STEPS[s]).cache] == [
        "ingest",
        "transform",
        "train",
        "pretrain",
    ]


def test_gpu_settings_are_run_parameters_of_the_train_step():
    spec, platform = _documents(GOLDEN)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["accelerator_type"]["defaultValue"] == "nvidia.com/gpu"
    assert params["accelerator_count"]["parameterType"] == "NUMBER_INTEGER"
    assert params["accelerator_count"]["defaultValue"] == 1
    assert params["accelerator_node_selector"]["parameterType"] == "STRUCT"
    assert params["accelerator_node_selector"]["defaultValue"] == {}
    executors = spec["deploymentSpec"]["executors"]
    accelerator = executors["exec-train"]["container"]["resources"]["accelerator"]
    # Resolved per run from the parameters the train task receives from the pipeline.
    assert accelerator == {
        "resourceType": "{{$.inputs.parameters['pipelinechannel--accelerator_type']}}",
        "resourceCount": "{{$.inputs.parameters['pipelinechannel--accelerator_count']}}",
    }
    train_inputs = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert train_inputs["pipelinechannel--accelerator_type"] == {
        "componentInputParameter": "accelerator_type"
    }
    assert train_inputs["pipelinechannel--accelerator_count"] == {
        "componentInputParameter": "accelerator_count"
    }
    assert platform["exec-train"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert platform["exec-train"]["nodeSelector"] == {
        "nodeSelectorJson": {"componentInputParameter": "accelerator_node_selector"}
    }
    # Only the train step and the encoder pretraining ask for a GPU.
    gpu_steps = {"exec-train", "exec-pretrain"}
    pretrain = executors["exec-pretrain"]["container"]["resources"]["accelerator"]
    assert pretrain == accelerator
    assert platform["exec-pretrain"]["tolerations"] == platform["exec-train"]["tolerations"]
    others = [e for name, e in executors.items() if name not in gpu_steps]
    assert not any("accelerator" in e["container"]["resources"] for e in others)
    assert not any(
        "tolerations" in c or "nodeSelector" in c
        for name, c in platform.items()
        if name not in gpu_steps
    )


def test_data_and_model_repository_volume_is_mounted_where_it_is_read_and_written():
    spec, platform = _documents(GOLDEN)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["repository_pvc"]["defaultValue"] == "mlpr-repository"
    mounted = {name: c["pvcMount"] for name, c in platform.items() if "pvcMount" in c}
    assert set(mounted) == {"exec-ingest", "exec-train", "exec-evaluate", "exec-push"}
    for mounts in mounted.values():
        (mount,) = mounts
        assert mount["mountPath"] == "/mnt/mlpr"
        # The claim's name is the run parameter (push gets it through its condition).
        assert mount["pvcNameParameter"]["componentInputParameter"] in (
            "repository_pvc",
            "pipelinechannel--repository_pvc",
        )


def test_zero_gpus_compiles_a_spec_without_accelerator_settings(tmp_path):
    path = compile_pipeline(str(tmp_path / "pipeline-cpu.yaml"), gpus=0)
    with open(path) as fh:
        text = fh.read()
    assert "accelerator" not in text and "nvidia.com/gpu" not in text
    spec, platform = _documents(path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert not {"accelerator_type", "accelerator_count", "accelerator_node_selector"} & set(params)
    for executor in spec["deploymentSpec"]["executors"].values():
        assert set(executor["container"]["resources"]) == {
            "cpuRequest",
            "memoryRequest",
            "resourceCpuRequest",
            "resourceMemoryRequest",
        }
    assert not any("tolerations" in c or "nodeSelector" in c for c in platform.values())
    # The rest of the pipeline is the same: same steps, same parameters otherwise.
    golden, _ = _documents(GOLDEN)
    assert set(params) == set(golden["root"]["inputDefinitions"]["parameters"]) - {
        "accelerator_type",
        "accelerator_count",
        "accelerator_node_selector",
    }
    assert (
        spec["deploymentSpec"]["executors"].keys() == golden["deploymentSpec"]["executors"].keys()
    )


def test_compile_cli_sets_the_default_gpu_count(tmp_path):
    from click.testing import CliRunner

    from pipeline import cli

    out = tmp_path / "two.yaml"
    result = CliRunner().invoke(cli, ["compile", "--gpus", "2", "--output", str(out)])
    assert result.exit_code == 0, result.output
    spec, _ = _documents(str(out))
    assert spec["root"]["inputDefinitions"]["parameters"]["accelerator_count"]["defaultValue"] == 2
    refused = CliRunner().invoke(cli, ["compile", "--gpus", "-1", "--output", str(out)])
    assert refused.exit_code == 2 and "-1 is not in the range x>=0" in refused.output


def test_run_refuses_pretraining_tiny_on_its_top_layer_before_any_step(tmp_path):
    from click.testing import CliRunner

    from local.run_pipeline import main

    root = tmp_path / "root"
    args = ["--encoder-preset", "tiny", "--pretrain-encoder", "--pipeline-root", str(root)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2
    assert "'tiny' encoder is random" in refused.output and "got 1" in refused.output
    assert not root.exists()  # no step ran


def test_every_step_retries_as_compiled(tmp_path):
    """Every step runs again after a failure (a preempted node, an evicted pod), with backoff;
    `compile --retries 0` and the local run (build_pipeline(retries=0)) never retry."""
    from click.testing import CliRunner

    from components import resources
    from pipeline import cli

    spec, _ = _documents(GOLDEN)
    for step, task in _tasks(spec).items():
        if step not in _STEPS:
            continue
        assert task["retryPolicy"] == {
            "maxRetryCount": resources.DEFAULT_RETRY.count,
            "backoffDuration": resources.DEFAULT_RETRY.backoff,
            "backoffFactor": resources.DEFAULT_RETRY.factor,
            "backoffMaxDuration": resources.DEFAULT_RETRY.max_duration,
        }, step
    assert resources.DEFAULT_RETRY.count >= 1
    out = tmp_path / "once.yaml"
    result = CliRunner().invoke(cli, ["compile", "--retries", "0", "--output", str(out)])
    assert result.exit_code == 0, result.output
    never, _ = _documents(str(out))
    assert not any("retryPolicy" in task for task in _tasks(never).values())
    assert set(_tasks(never)) == set(_tasks(spec))
