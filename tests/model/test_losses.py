import math

import numpy as np
import pytest
from keras import ops

from model.losses import binary_crossentropy, calibration_penalty, uncertainty_weighted_sum
from model.multitask_loss import MultiTaskLoss


def test_uncertainty_weighted_sum_by_hand():
    # s = log sigma = (0, ln 2): 0.5 * 1 * 0.8 + 0 + 0.5 * (1/4) * 0.4 + ln 2
    value = uncertainty_weighted_sum([0.8, 0.4], ops.convert_to_tensor([0.0, math.log(2.0)]))
    assert float(value) == pytest.approx(0.4 + 0.05 + math.log(2.0), rel=1e-6)


def test_uncertainty_optimum_is_sigma_squared_equal_to_the_loss():
    # d/ds [0.5 e^{-2s} L + s] = 0  <=>  e^{2s} = L: the learned sigma^2 tracks the task loss.
    loss = 0.3
    best = 0.5 * math.log(loss)
    values = [
        float(uncertainty_weighted_sum([loss], ops.convert_to_tensor([best + d])))
        for d in (-0.1, 0.0, 0.1)
    ]
    assert values[1] < values[0] and values[1] < values[2]


def test_calibration_penalty_by_hand():
    click = ops.convert_to_tensor([0.5, 0.2])
    atc = ops.convert_to_tensor([0.6, 0.1])  # first pair out of order by 0.1
    purchase = ops.convert_to_tensor([0.1, 0.4])  # second pair out of order by 0.3
    # mean(relu(atc - click)) + mean(relu(purchase - atc)) = 0.1/2 + 0.3/2
    assert float(calibration_penalty([click, atc, purchase])) == pytest.approx(0.2, rel=1e-6)


def test_binary_crossentropy_by_hand():
    y = ops.convert_to_tensor([1.0, 0.0])
    p = ops.convert_to_tensor([0.8, 0.25])
    expected = -(math.log(0.8) + math.log(0.75)) / 2
    assert float(binary_crossentropy(y, p)) == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(float(binary_crossentropy(y, ops.convert_to_tensor([0.0, 1.0]))))


def test_multitask_loss_layer_total():
    layer = MultiTaskLoss(("click", "atc"), balancing="fixed", calibration_weight=2.0)
    y = {"click": ops.convert_to_tensor([[1.0]]), "atc": ops.convert_to_tensor([[0.0]])}
    p = {"click": ops.convert_to_tensor([[0.5]]), "atc": ops.convert_to_tensor([[0.75]])}
    layer([p["click"], p["atc"]])
    # ln 2 + (-ln 0.25) + 2 * relu(0.75 - 0.5)
    expected = math.log(2.0) - math.log(0.25) + 2 * 0.25
    assert float(layer.total(y, p)) == pytest.approx(expected, rel=1e-5)
    assert not layer.log_sigma.trainable
    with pytest.raises(ValueError, match="calibration_weight"):
        MultiTaskLoss(("click",), calibration_weight=-1.0)
