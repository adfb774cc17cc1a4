"""The train step as the component calls it: which encoder preset it starts from, what it
logs into the kfp Metrics and records in the model's metadata."""

import os

import pytest
from kfp import dsl

from components.train import step
from components.train.training import TrainResult
from conftest import synthetic_splits, transformed_dataset
from contract import layout
from contract import schema as S

PARAMETERS = dict(
    fine_tune_layers="0",
    text_cache_dir="",
    max_epochs=3,
    batch_size=32,
    learning_rate=0.001,
    seed=0,
)


def pretrain_output(path, enabled: bool) -> str:
    """The pretrain step's output: a preset directory, or only the marker when it was off."""
    os.makedirs(path)
    if not enabled:
        with open(os.path.join(path, layout.PRETRAIN_DISABLED_FILE), "w") as fh:
            fh.write("off\n")
    return str(path)


def test_starts_from_the_pretrained_preset_unless_pretraining_was_off(tmp_path):
    on = pretrain_output(tmp_path / "on", enabled=True)
    off = pretrain_output(tmp_path / "off", enabled=False)
    assert step.starting_preset(on, "all-minilm-l6-v2") == on
    assert step.starting_preset(off, "all-minilm-l6-v2") == "all-minilm-l6-v2"


def test_logs_the_best_epoch_and_records_the_metadata(tmp_path, monkeypatch):
    calls = []

    def run_training(transform_dir, transformed_dir, model_dir, config):
        calls.append((transform_dir, transformed_dir, model_dir, config))
        return TrainResult(
            epochs_run=3,
            best_epoch=2,
            best_val_loss=0.4,
            train_examples=90,
            eval_examples=10,
            seconds=1.0,
            history={"loss": [0.6, 0.5, 0.45], "val_loss": [0.5, 0.4, 0.41]},
        )

    monkeypatch.setattr(step, "run_training", run_training)
    metrics, metadata = dsl.Metrics(uri=str(tmp_path / "metrics")), {}
    pretrained = pretrain_output(tmp_path / "pretrained", enabled=True)
    step.train_step(
        "tft",
        "tx",
        pretrained,
        "model",
        metadata,
        metrics,
        architecture="mlp_single",
        encoder_preset="tiny",
        **PARAMETERS,
    )
    ((transform_dir, transformed_dir, model_dir, config),) = calls
    assert (transform_dir, transformed_dir, model_dir) == ("tft", "tx", "model")
    assert (config.architecture, config.encoder_preset) == ("mlp_single", pretrained)
    assert config.ranker_config.fine_tune_layers == 0
    assert config.ranker_config.loss_balancing == "fixed"  # the baseline's own
    assert (config.max_epochs, config.batch_size, config.text_cache_dir) == (3, 32, None)
    # The history at the best epoch (the second), not the last.
    assert metrics.metadata == {
        "loss": 0.5,
        "val_loss": 0.4,
        "best_epoch": 2,
        "train_examples": 90,
    }
    assert metadata == {
        "architecture": "mlp_single",
        "encoder_preset": "tiny",
        "domain_pretrained": True,
        "best_val_loss": 0.4,
    }


def test_the_loss_balancing_replaces_the_architectures_own():
    settings = dict(PARAMETERS, architecture="mlpr", encoder_preset="tiny", max_epochs=3)
    settings.pop("text_cache_dir")
    for balancing, expected in (("", "uncertainty"), ("gradnorm", "gradnorm"), ("dwa", "dwa")):
        config = step.step_config({**settings, "loss_balancing": balancing}, "tiny", "")
        assert config.ranker_config.loss_balancing == expected
    config = step.step_config({**settings, "architecture": "mmoe", "loss_balancing": ""}, "t", "")
    assert config.ranker_config.loss_balancing == "fixed"
    masked = step.step_config({**settings, "loss_balancing": "", "region_mask": True}, "t", "")
    assert masked.ranker_config.region_mask and masked.ranker_config.loss_balancing == "uncertainty"
    xgboost = {**settings, "architecture": "xgboost", "loss_balancing": "dwa"}
    with pytest.raises(ValueError, match="loss_balancing change a neural network"):
        step.step_config(xgboost, "tiny", "")


def test_xgboost_trains_exports_and_logs_its_rounds(tmp_path):
    dirs = transformed_dataset(tmp_path, synthetic_splits(128, 48, 48), S.DEMO_SCHEMA)
    metrics, metadata = dsl.Metrics(uri=str(tmp_path / "metrics")), {}
    result = step.train_step(
        dirs["tft"],
        dirs["tx"],
        pretrain_output(tmp_path / "off", enabled=False),
        str(tmp_path / "model"),
        metadata,
        metrics,
        architecture="xgboost",
        encoder_preset="tiny",
        **PARAMETERS,
    )
    rounds = {f"{task}_rounds": result.history[f"{task}_rounds"][0] for task in S.DEFAULT_TASKS}
    assert result.best_epoch == max(rounds.values()) > 1
    assert metrics.metadata == {
        **rounds,
        "best_epoch": result.best_epoch,
        "train_examples": 128,
    }
    assert metadata == {
        "architecture": "xgboost",
        "encoder_preset": "tiny",
        "domain_pretrained": False,
        "best_val_loss": result.best_val_loss,
    }
    model_dir = tmp_path / "model"
    assert (model_dir / layout.SAVED_MODEL_DIR / "saved_model.pb").exists()
    assert (model_dir / layout.TRAIN_INFO_FILE).exists()


def test_the_backup_folder_is_keyed_by_the_steps_inputs_and_settings(tmp_path):
    from components.train.step import BACKUP_DIR, backup_dir

    inputs = {
        "transform": "/p/run1/transform/graph",
        "transformed": "/p/run1/tx",
        "pretrained": "x",
    }
    settings = {"architecture": "mlpr", "seed": 0, "max_epochs": 8}
    # No root: inside the model artifact, which a retry of the task writes again.
    assert backup_dir("", "/p/run2/train/model", inputs, settings) == os.path.join(
        "/p/run2/train/model", BACKUP_DIR
    )
    root = str(tmp_path)
    first = backup_dir(root, "/p/run2/train/model", inputs, settings)
    # A new run over the same (cached) inputs and settings: the same folder, wherever its model.
    assert (
        backup_dir(root, "/p/run3/train/model", dict(reversed(inputs.items())), settings) == first
    )
    assert os.path.dirname(first) == root
    # Another seed, or other inputs: another folder.
    assert backup_dir(root, "m", inputs, {**settings, "seed": 1}) != first
    assert backup_dir(root, "m", {**inputs, "transformed": "/p/run4/tx"}, settings) != first
