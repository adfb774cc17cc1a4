"""GradNorm and Dynamic Weight Average in the training loop: their task weights move as their
rules say, and the saved model keeps them."""

import keras
import numpy as np
import pytest

from components.train.config import train_config
from components.train.training import run_training
from conftest import SMALL_RANKER, TINY_TRAINING, synthetic_splits, transformed_dataset
from contract import layout
from contract import schema as S
from model.loss_balancing import dwa_weights
from model.multitask_loss import loss_layer

SETTINGS = dict(TINY_TRAINING, max_epochs=4, early_stopping_patience=4)
SMALL = SMALL_RANKER


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("balancing")
    transformed_dataset(root, synthetic_splits(384, 64, 64), S.DEMO_SCHEMA)
    return root


def _train(data, tmp_path, balancing: str):
    config = train_config(**SETTINGS, **SMALL, loss_balancing=balancing)
    result = run_training(str(data / "tft"), str(data / "tx"), str(tmp_path), config, verbose=0)
    model = keras.saving.load_model(str(tmp_path / layout.KERAS_MODEL_FILE))
    return result, loss_layer(model)


def test_gradnorm_learns_task_weights_that_sum_to_the_tasks(data, tmp_path):
    result, layer = _train(data, tmp_path, "gradnorm")
    weights = np.asarray(layer.task_weights)
    assert np.sum(weights) == pytest.approx(len(S.DEFAULT_TASKS), rel=1e-5)
    # 24 steps at a learning rate of 1e-3: Adam moves a weight by about the learning rate a
    # step, and renormalising moves them all by up to as much again.
    moved = np.abs(weights - 1.0)
    assert np.all(moved > 1e-4) and np.all(moved < 2 * 24 * 1e-3)
    assert np.all(np.asarray(layer.initial_losses) > 0)  # L(0), recorded at the first step
    for task in S.DEFAULT_TASKS:
        assert len(result.history[f"{task}_loss"]) == result.epochs_run
        assert len(result.history[f"val_{task}_loss"]) == result.epochs_run


def test_dwa_weights_follow_the_logged_task_losses(data, tmp_path):
    result, layer = _train(data, tmp_path, "dwa")
    # The saved model is the best epoch's (early stopping restores it), which trained with the
    # weights set at the end of the epoch before, from that epoch's and the one before's losses.
    best = result.best_epoch - 1  # 0-based
    losses = np.array([result.history[f"{t}_loss"] for t in S.DEFAULT_TASKS]).T  # [epoch, task]
    expected = dwa_weights(losses[best - 1], losses[best - 2]) if best >= 2 else np.ones(3)
    np.testing.assert_allclose(np.asarray(layer.task_weights), np.asarray(expected), rtol=1e-5)
    assert result.epochs_run == SETTINGS["max_epochs"]
    # Every epoch's loss is the weighted sum of its task losses, each a mean over the split.
    first = result.history["loss"][0]
    assert first == pytest.approx(sum(losses[0]), rel=1e-4)  # weights of 1 in epoch 1


def test_a_listwise_task_trains_on_each_querys_list(data, tmp_path):
    """RankerConfig.listwise_tasks: the click task takes the softmax loss over its query's
    products, the others stay pointwise. The softmax loss of a list is about the log of its
    length (here 10 queries of ~38 products, in batches of 64: lists of ~20 to 38), far
    above the pointwise loss of a rate near 0.05 (below log 2)."""
    config = train_config(**SETTINGS, **SMALL, listwise_tasks=("click",))
    result = run_training(str(data / "tft"), str(data / "tx"), str(tmp_path), config, verbose=0)
    model = keras.saving.load_model(str(tmp_path / layout.KERAS_MODEL_FILE))
    assert loss_layer(model).listwise_tasks == ("click",)
    assert min(result.history["click_loss"]) > np.log(10)
    assert max(result.history["atc_loss"]) < np.log(2)
    assert all(np.isfinite(result.history["val_click_loss"]))


def test_listwise_tasks_must_be_the_logs_tasks_and_train_cached():
    config = train_config(**SETTINGS, **SMALL, listwise_tasks=("view",))
    with pytest.raises(ValueError, match="listwise_tasks must be distinct tasks of the log"):
        config.for_tasks(S.DEFAULT_TASKS)
    assert config.for_tasks(("view", "click")).ranker.listwise_tasks == ("view",)
    with pytest.raises(ValueError, match="listwise tasks train with the encoder's outputs cached"):
        train_config(**{**SETTINGS, "fine_tune_layers": "all"}, **SMALL, listwise_tasks=("click",))
