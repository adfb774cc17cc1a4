"""The local run's preflight refuses training settings that cannot work before any step
starts, building them as the train step does (components/train/config.train_config)."""

import dataclasses

import pytest

import pipeline_parameters as P
from local.run_pipeline import preflight

DEFAULT = P.PipelineParameters(model_base="/m")


def test_the_defaults_pass():
    preflight(DEFAULT)
    preflight(dataclasses.replace(DEFAULT, listwise_tasks="click,purchase", fine_tune_layers="1"))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"architecture": "xgboost", "loss_balancing": "dwa"}, "loss_balancing change a neural"),
        ({"relevance_task": True, "fine_tune_layers": "all"}, "the relevance task trains with"),
        # The demo shop's funnel is click, atc, purchase.
        ({"listwise_tasks": "click,view"}, r"listwise_tasks must be distinct tasks of the log"),
        ({"fine_tune_layers": "top"}, "fine_tune_layers must be 'all' or a whole number"),
    ],
)
def test_training_settings_that_cannot_work_stop_the_run(changes, error):
    with pytest.raises(ValueError, match=error):
        preflight(dataclasses.replace(DEFAULT, **changes))
