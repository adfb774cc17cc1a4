"""Each loss balancing against a step computed by hand on a tiny example."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from model.config import RankerConfig
from model.loss_balancing import (
    DynamicWeightAverage,
    dwa_weights,
    gradnorm_gradient,
    renormalised,
)
from model.multitask_loss import MultiTaskLoss

TASKS = ("click", "atc")
Y = {"click": ops.convert_to_tensor([[1.0]]), "atc": ops.convert_to_tensor([[0.0]])}
P = {"click": ops.convert_to_tensor([[0.5]]), "atc": ops.convert_to_tensor([[0.75]])}
# The task losses of Y and P: -ln 0.5 and -ln(1 - 0.75).
L_CLICK, L_ATC = math.log(2.0), -math.log(0.25)


def _layer(**kwargs) -> MultiTaskLoss:
    layer = MultiTaskLoss(TASKS, **kwargs)
    layer([P["click"], P["atc"]])
    return layer


def test_fixed_is_the_weighted_sum_of_the_task_losses():
    assert float(_layer(balancing="fixed").total(Y, P)) == pytest.approx(L_CLICK + L_ATC, 1e-5)
    weighted = _layer(balancing="fixed", task_weights=(2.0, 0.5))
    assert float(weighted.total(Y, P)) == pytest.approx(2 * L_CLICK + 0.5 * L_ATC, 1e-5)
    assert not weighted.log_sigma.trainable and len(weighted.weights) == 1  # nothing learns


def test_uncertainty_is_the_papers_eq_10():
    layer = _layer(balancing="uncertainty")
    layer.log_sigma.assign([0.0, math.log(2.0)])
    expected = 0.5 * L_CLICK + 0.5 * 0.25 * L_ATC + math.log(2.0)
    assert float(layer.total(Y, P)) == pytest.approx(expected, rel=1e-5)
    assert layer.log_sigma.trainable


def test_dwa_weights_by_hand():
    # r = (0.5 / 1.0, 0.9 / 1.0); w = 2 exp(r / 2) / (exp(0.25) + exp(0.45))
    weights = np.asarray(dwa_weights([0.5, 0.9], [1.0, 1.0], temperature=2.0))
    z = math.exp(0.25) + math.exp(0.45)
    np.testing.assert_allclose(weights, [2 * math.exp(0.25) / z, 2 * math.exp(0.45) / z], 1e-6)
    # The task whose loss fell less gets more weight; equal ratios give weights of 1.
    assert weights[1] > 1 > weights[0]
    np.testing.assert_allclose(np.asarray(dwa_weights([0.4, 0.8], [0.8, 1.6])), [1.0, 1.0])


def test_the_dwa_callback_keeps_1_for_two_epochs_then_weights_by_the_last_two():
    layer = _layer(balancing="dwa", dwa_temperature=2.0)
    callback = DynamicWeightAverage(layer)
    callback.on_epoch_end(0, {"click_loss": 1.0, "atc_loss": 1.0})
    np.testing.assert_array_equal(np.asarray(layer.task_weights), [1.0, 1.0])
    callback.on_epoch_end(1, {"click_loss": 0.5, "atc_loss": 0.9})
    np.testing.assert_allclose(
        np.asarray(layer.task_weights), np.asarray(dwa_weights([0.5, 0.9], [1.0, 1.0])), 1e-6
    )
    # The loss uses them: w_click L_click + w_atc L_atc.
    w = np.asarray(layer.task_weights)
    assert float(layer.total(Y, P)) == pytest.approx(w[0] * L_CLICK + w[1] * L_ATC, rel=1e-5)
    with pytest.raises(ValueError, match="atc_loss"):
        callback.on_epoch_end(2, {"click_loss": 0.4})


def test_gradnorm_gradient_by_hand():
    # G = w g = (2, 1), mean 1.5; L / L0 = (0.5, 0.8), mean 0.65, so r = (0.769, 1.231);
    # targets 1.5 r^1.5 = (1.012, 2.048): click's norm is above its target, atc's below.
    gradient = np.asarray(
        gradnorm_gradient([1.0, 1.0], [2.0, 1.0], [0.5, 0.8], [1.0, 1.0], alpha=1.5)
    )
    np.testing.assert_allclose(gradient, [2.0, -1.0])
    # alpha = 0: the target is the mean norm, whatever the training rates.
    np.testing.assert_allclose(
        np.asarray(gradnorm_gradient([1.0, 1.0], [2.0, 1.0], [0.5, 0.8], [1.0, 1.0], 0.0)),
        [2.0, -1.0],
    )
    np.testing.assert_allclose(
        np.asarray(gradnorm_gradient([0.25, 1.0], [2.0, 1.0], [0.5, 0.8], [1.0, 1.0], 0.0)),
        [-2.0, 1.0],  # G = (0.5, 1) around a mean of 0.75
    )


def test_renormalised_weights_sum_to_the_number_of_tasks():
    np.testing.assert_allclose(np.asarray(renormalised([0.5, 1.5, 2.0])), [0.375, 1.125, 1.5])
    assert float(np.asarray(renormalised([-1.0, 1.0]))[0]) > 0  # a task is never dropped


def test_a_gradnorm_step_by_hand():
    layer = _layer(balancing="gradnorm", gradnorm_alpha=1.5)
    optimizer = keras.optimizers.Adam(learning_rate=0.1)
    optimizer.build([layer.task_weights])
    # The first step records L(0) = L, so r = 1 and the target is the mean norm 1.5:
    # gradient (2, -1); Adam's first step moves each weight by the learning rate against
    # its gradient's sign: (0.9, 1.1), which already sums to 2.
    layer.gradnorm_step([0.5, 0.8], [2.0, 1.0], optimizer)
    np.testing.assert_allclose(np.asarray(layer.initial_losses), [0.5, 0.8])
    np.testing.assert_allclose(np.asarray(layer.task_weights), [0.9, 1.1], atol=1e-6)
    # The loss weights the tasks by them.
    expected = 0.9 * L_CLICK + 1.1 * L_ATC
    assert float(layer.total(Y, P)) == pytest.approx(expected, rel=1e-5)
    # L(0) stays the first step's.
    layer.gradnorm_step([0.25, 0.8], [1.0, 1.0], optimizer)
    np.testing.assert_allclose(np.asarray(layer.initial_losses), [0.5, 0.8])
    assert float(np.sum(np.asarray(layer.task_weights))) == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"loss_balancing": "pcgrad"}, "loss_balancing"),
        ({"loss_balancing": "dwa", "task_weights": (1.0, 2.0, 1.0)}, "task_weights"),
        ({"gradnorm_alpha": -1.0}, "gradnorm_alpha"),
        ({"dwa_temperature": 0.0}, "dwa_temperature"),
    ],
)
def test_bad_balancing_settings_are_named(changes, named):
    with pytest.raises(ValueError, match=named):
        RankerConfig(**changes)
    with pytest.raises(ValueError, match="task_weights"):
        MultiTaskLoss(TASKS, balancing="fixed", task_weights=(1.0,))


def test_configurations_saved_before_loss_balancing_still_load():
    assert RankerConfig.from_dict({"uncertainty_loss": False}).loss_balancing == "fixed"
    assert RankerConfig.from_dict({"uncertainty_loss": True}).loss_balancing == "uncertainty"
    old = MultiTaskLoss.from_config({"tasks": list(TASKS), "uncertainty_weighting": False})
    assert old.balancing == "fixed"
