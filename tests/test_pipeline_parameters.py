"""One default per parameter: the pipeline's, its components' and `pipeline.py run`'s agree."""

import inspect

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


def test_every_component_default_is_the_pipelines():
    defaults = _pipeline_defaults()
    drift = []
    for component in (ingest, transform, pretrain, train, evaluate, push):
        for name, p in inspect.signature(component.python_func).parameters.items():
            given = p.default is not inspect.Parameter.empty
            if given and name in defaults and p.default != defaults[name]:
                drift.append((component.name, name, p.default, defaults[name]))
    assert drift == []


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
