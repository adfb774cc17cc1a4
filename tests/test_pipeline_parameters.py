"""One default per parameter: the pipeline's, its components' and `pipeline.py run`'s agree."""

import inspect
import os

import pipeline
from components.evaluate.component import evaluate
from components.ingest.component import ingest
from components.pretrain.component import pretrain
from components.push.component import push
from components.train.component import train
from components.transform.component import transform

# `pipeline.py run` differs on purpose: it runs on this machine (CPU batching, a local
# repository that the local server reads), where the compiled pipeline asks for them.
LOCAL_RUN_DEFAULTS = {"model_base", "serving_base", "serving_batching"}


def _pipeline_defaults() -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(pipeline.mlpr_dag).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _wiring() -> list[tuple[str, str, str]]:
    """(component, its parameter, the pipeline parameter feeding it), from the compiled
    pipeline.yaml (tests/test_pipeline_compile.py holds it to the code)."""
    import yaml

    with open(os.path.join(os.path.dirname(pipeline.__file__), "pipeline.yaml")) as fh:
        spec = next(yaml.safe_load_all(fh))  # the pipeline spec; then its platform spec
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


def test_every_component_default_is_the_pipelines():
    """Each component parameter fed by a pipeline parameter defaults to that one's default
    (the pretrain step's fine_tune_layers is the pipeline's pretrain_fine_tune_layers)."""
    defaults = _pipeline_defaults()
    components = {c.name: c for c in (ingest, transform, pretrain, train, evaluate, push)}
    drift, checked = [], 0
    for component, name, source in _wiring():
        if component not in components or source not in defaults:
            continue
        p = inspect.signature(components[component].python_func).parameters.get(name)
        if p is None or p.default is inspect.Parameter.empty:  # e.g. a GPU count for resources
            continue
        checked += 1
        if p.default != defaults[source]:
            drift.append((component, name, p.default, source, defaults[source]))
    assert drift == []
    assert checked >= 25
    assert ("pretrain", "fine_tune_layers", "pretrain_fine_tune_layers") in _wiring()


def test_every_local_run_option_defaults_to_the_pipelines():
    defaults = _pipeline_defaults()
    checked, drift = 0, []
    for option in pipeline.cli.commands["run"].params:
        if option.name not in defaults or option.name in LOCAL_RUN_DEFAULTS or option.multiple:
            continue
        value = False if getattr(option, "is_flag", False) else option.default
        if getattr(option, "is_flag", False) and option.flag_value not in (True, False):
            continue  # an alias that sets another option (--freeze-encoder)
        checked += 1
        if value != defaults[option.name]:
            drift.append((option.name, value, defaults[option.name]))
    assert drift == []
    assert checked >= 20  # the run command does cover the pipeline's parameters
