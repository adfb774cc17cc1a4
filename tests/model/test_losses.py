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


def _softmax_loss_by_hand(labels, logits, lists):
    """TF-Ranking's softmax loss, list by list in plain numpy."""
    losses = []
    for one in dict.fromkeys(lists):
        rows = [i for i, q in enumerate(lists) if q == one]
        y, s = np.array([labels[i] for i in rows]), np.array([logits[i] for i in rows])
        if y.sum() <= 0:
            continue
        log_softmax = s - np.log(np.sum(np.exp(s)))
        losses.append(-np.sum(y / y.sum() * log_softmax))
    return float(np.mean(losses)) if losses else 0.0


def test_listwise_softmax_loss_by_hand():
    from model.losses import listwise_softmax_crossentropy

    rng = np.random.default_rng(0)
    lists = [5, 5, 5, 9, 9, 2, 2, 2, 2, 7]  # 7: a list of one; 9: no positive label
    labels = [0.2, 0.0, 0.5, 0.0, 0.0, 1.0, 0.3, 0.0, 0.1, 0.4]
    logits = rng.normal(size=10) * 3
    p = 1 / (1 + np.exp(-logits))
    # The lists need not be contiguous: shuffle the rows.
    order = rng.permutation(10)
    value = listwise_softmax_crossentropy(
        ops.convert_to_tensor(np.array(labels)[order].reshape(-1, 1)),
        ops.convert_to_tensor(p[order].reshape(-1, 1)),
        ops.convert_to_tensor(np.array(lists)[order].reshape(-1, 1)),
    )
    expected = _softmax_loss_by_hand(labels, logits, lists)
    assert float(value) == pytest.approx(expected, rel=1e-5)
    # A list of one with a positive label costs nothing; the mean is over the 3 lists with one.
    assert expected == pytest.approx(
        (_softmax_loss_by_hand(labels[:3], logits[:3], lists[:3])
         + _softmax_loss_by_hand(labels[5:9], logits[5:9], lists[5:9])) / 3, rel=1e-9
    )  # fmt: skip
    # Shifting one list's logits together changes nothing; ranking its positive lower does.
    shifted = np.where(np.array(lists) == 2, logits + 4.0, logits)
    assert _softmax_loss_by_hand(labels, shifted, lists) == pytest.approx(expected, rel=1e-9)
    empty = ops.zeros((0, 1))
    assert float(listwise_softmax_crossentropy(empty, empty, empty)) == 0.0


def test_multitask_loss_takes_listwise_tasks_from_the_labels():
    from model.multitask_loss import LIST_ID

    layer = MultiTaskLoss(("click", "atc"), balancing="fixed", listwise_tasks=("atc",))
    y = {
        "click": ops.convert_to_tensor([[1.0], [0.0]]),
        "atc": ops.convert_to_tensor([[1.0], [0.0]]),
        LIST_ID: ops.convert_to_tensor([[3], [3]]),
    }
    p = {
        "click": ops.convert_to_tensor([[0.5], [0.5]]),
        "atc": ops.convert_to_tensor([[0.8], [0.5]]),
    }
    layer([p["click"], p["atc"]])
    click, atc = layer.task_losses(y, p)
    assert float(click) == pytest.approx(math.log(2.0), rel=1e-6)  # pointwise
    # Softmax over the logits (ln 4, 0): -log(4 / 5).
    assert float(atc) == pytest.approx(-math.log(0.8), rel=1e-5)
    with pytest.raises(ValueError, match="need each example's query"):
        layer.task_losses({k: v for k, v in y.items() if k != LIST_ID}, p)
    with pytest.raises(ValueError, match="not tasks of"):
        MultiTaskLoss(("click",), listwise_tasks=("purchase",))
    assert MultiTaskLoss.from_config(layer.get_config()).listwise_tasks == ("atc",)
