"""One table of parameters (pipeline_parameters.py): the kfp pipeline's signature, the local
run's options and the components' defaults all agree with it."""

import dataclasses
import inspect
import os

import click
import pytest

import pipeline
import pipeline_parameters as P
from components.evaluate.component import evaluate
from components.ingest.component import ingest
from components.pretrain.component import pretrain
from components.push.component import push
from components.train.component import train
from components.transform.component import transform
from local.run_pipeline import main as local_run

# The local run differs on purpose: it runs on this machine (a local model repository that
# the local server reads, CPU batching), where the compiled pipeline asks for a volume and GPUs.
LOCAL_DEFAULTS = {
    "model_base": "runs/serving",
    "checkpoint_root": "runs/checkpoints",
    "serving_base": None,
    "serving_batching": "cpu",
}


def _golden() -> dict:
    import yaml

    with open(os.path.join(os.path.dirname(pipeline.__file__), "pipeline.yaml")) as fh:
        return next(yaml.safe_load_all(fh))  # the pipeline spec; then its platform spec


def _wiring() -> list[tuple[str, str, str]]:
    """(component, its parameter, the pipeline parameter feeding it), from the compiled
    pipeline.yaml (tests/test_pipeline_compile.py holds it to the code)."""
    spec = _golden()
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    wired = []
    for dag in dags:
        for task in dag["tasks"].values():
            component = task["componentRef"]["name"].removeprefix("comp-")
            for name, given in task.get("inputs", {}).get("parameters", {}).items():
                source = given.get("componentInputParameter", "")
                if source:
                    wired.append((component, name, source.removeprefix("pipelinechannel--")))
    return wired


def test_every_component_default_is_the_tables():
    """Each component parameter fed by a pipeline parameter defaults to the table's default
    (the pretrain step's fine_tune_layers is the pipeline's pretrain_fine_tune_layers)."""
    defaults = P.defaults()
    components = {c.name: c for c in (ingest, transform, pretrain, train, evaluate, push)}
    drift, checked = [], 0
    for component, name, source in _wiring():
        if component not in components:  # the condition around push passes values through
            continue
        p = inspect.signature(components[component].python_func).parameters.get(name)
        if p is None or p.default is inspect.Parameter.empty:  # e.g. model_base, required
            continue
        checked += 1
        if p.default != defaults[source]:
            drift.append((component, name, p.default, source, defaults[source]))
    assert drift == []
    assert checked >= 28
    assert ("pretrain", "fine_tune_layers", "pretrain_fine_tune_layers") in _wiring()


def test_the_train_settings_start_from_the_tables_defaults():
    """train_config starts from STEP_DEFAULTS: the table's defaults of the train step's
    parameters, each fed by the pipeline parameter of its name; with the component's own
    defaults the step builds exactly train_config()."""
    from components.train.config import STEP_DEFAULTS, train_config
    from components.train.step import SETTINGS, step_config

    assert dict(STEP_DEFAULTS) == {name: P.default(name) for name in STEP_DEFAULTS}
    assert {("train", name, name) for name in STEP_DEFAULTS} <= set(_wiring())
    component = inspect.signature(train.python_func).parameters
    given = {name: component[name].default for name in SETTINGS}
    assert given == {name: STEP_DEFAULTS[name] for name in SETTINGS}
    cache = component["text_cache_dir"].default
    assert step_config(given, given["encoder_preset"], cache) == train_config()


def test_the_compiled_pipeline_takes_the_tables_parameters_and_defaults():
    declared = _golden()["root"]["inputDefinitions"]["parameters"]
    assert list(declared) == sorted(P.FIELDS)  # every field, nothing else
    for name, definition in declared.items():
        assert definition.get("defaultValue", inspect.Parameter.empty) == P.default(name), name
        # kfp keeps the table's help as the parameter's description in the UI
        assert " ".join(definition["description"].split()) == P.FIELDS[name].metadata["help"]
    assert "defaultValue" not in declared["model_base"]  # required on a cluster


def test_a_pipeline_without_gpus_has_no_gpu_parameters():
    signature = P.signature(gpus=False)
    assert not set(P.GPU_PARAMETERS) & set(signature.parameters)
    assert set(P.signature(gpus=True).parameters) == set(P.FIELDS)


def _options() -> dict[str, click.Option]:
    return {o.name: o for o in local_run.params if isinstance(o, click.Option)}


def test_every_local_option_comes_from_the_table():
    options = _options()
    local = P.local_parameters()
    assert set(local) <= set(options)
    assert not {"repository_pvc", *P.GPU_PARAMETERS} & set(options)  # the cluster's only
    parsed = local_run.make_context("run", []).params  # what a run without options gets
    for name in local:
        option, meta = options[name], P.FIELDS[name].metadata
        assert parsed[name] == LOCAL_DEFAULTS.get(name, P.default(name)), name
        if meta["choices"]:
            assert list(option.type.choices) == list(meta["choices"]), name
    assert options["beam_pipeline_args"].opts == ["--beam-arg"]
    assert options["metric_floors"].opts == ["--metric-floor"]


def test_choices_are_the_codes():
    from components.evaluate.gate_config import SIGNIFICANCE_MODES
    from components.ingest.sources import FORMATS
    from model.architectures import ARCHITECTURES
    from serving.tfs_config import BATCHING_PROFILES

    choices = {n: f.metadata["choices"] for n, f in P.FIELDS.items()}
    assert choices["input_format"] == ("auto", *FORMATS)
    assert sorted(choices["serving_batching"]) == sorted(BATCHING_PROFILES)
    assert set(choices["architecture"]) == {*ARCHITECTURES, "xgboost"}
    assert choices["champion_significance"] == SIGNIFICANCE_MODES
    # The tasks are the data's schema's, checked when the gate is applied: no choices here.
    assert choices["significance_task"] is None
    assert P.default("significance_task") == ""


def test_a_value_out_of_its_choices_or_range_is_named():
    good = P.PipelineParameters(model_base="/m")
    good.check()
    with pytest.raises(ValueError, match=r"champion_significance must be one of .*got 'maybe'"):
        dataclasses.replace(good, champion_significance="maybe").check()
    dataclasses.replace(good, significance_task="favorite").check()  # any task of a schema
    with pytest.raises(ValueError, match=r"max_bad_share must be at most 1.0, got 1.5"):
        dataclasses.replace(good, max_bad_share=1.5).check()


def test_the_local_cli_parses_key_values_and_lists():
    from click.testing import CliRunner

    seen = {}

    @click.command()
    @P.click_options
    def probe(**params):
        seen.update(params)

    args = ["--metric-floor", "purchase/auc=0.7", "--beam-arg=--runner=DirectRunner"]
    result = CliRunner().invoke(probe, [*args, "--pretrain-encoder"])
    assert result.exit_code == 0, result.output
    assert seen["metric_floors"] == {"purchase/auc": 0.7}
    assert seen["beam_pipeline_args"] == ["--runner=DirectRunner"]
    assert seen["pretrain_encoder"] is True and seen["force_push"] is False
    bad = CliRunner().invoke(probe, ["--metric-floor", "auc"])
    assert bad.exit_code == 2 and "expected KEY=NUMBER" in bad.output
    bad = CliRunner().invoke(probe, ["--architecture", "bert"])
    assert bad.exit_code == 2 and "'bert' is not one of" in bad.output
