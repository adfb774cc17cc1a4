"""Layer tests with hand-computed values, plus the shared contract of every mlpr layer:
config round trip, symbolic and eager call."""

import math

import keras
import numpy as np
import pytest

from model.attention_unit import AttentionUnit
from model.experts import CustomizedGateExperts, MultiGateExperts
from model.interactions import Interactions
from model.mlp import MLP
from model.multitask_loss import MultiTaskLoss
from model.probability_transfer import ProbabilityTransfer


def test_probability_transfer_chains_the_funnel():
    layer = ProbabilityTransfer()
    p_ctr = np.array([[0.5], [0.2]], "float32")
    p_avr = np.array([[0.4], [1.0]], "float32")
    p_cvr = np.array([[0.5], [0.25]], "float32")
    click, atc, purchase = (np.asarray(t) for t in layer([p_ctr, p_avr, p_cvr]))
    np.testing.assert_allclose(click, [[0.5], [0.2]])
    np.testing.assert_allclose(atc, [[0.2], [0.2]])  # 0.5*0.4, 0.2*1.0
    np.testing.assert_allclose(purchase, [[0.1], [0.05]])  # 0.2*0.5, 0.2*0.25


def test_interactions_values():
    q = np.array([[1.0, 0.0]], "float32")
    p = np.array([[1.0, 1.0]], "float32")
    out = np.asarray(Interactions()([q, p]))
    # cosine = 1 / sqrt(2); hadamard = [1, 0]; concat = [1, 0, 1, 1]
    np.testing.assert_allclose(out, [[1 / math.sqrt(2), 1.0, 0.0, 1.0, 0.0, 1.0, 1.0]], rtol=1e-6)
    only_cos = np.asarray(Interactions(kinds=("cosine",))([q, -q]))
    np.testing.assert_allclose(only_cos, [[-1.0]], rtol=1e-6)
    # Zero vectors do not produce NaN.
    zero = np.zeros((1, 2), "float32")
    assert np.all(np.isfinite(np.asarray(Interactions()([zero, p]))))


def test_interactions_reject_unknown_kinds():
    with pytest.raises(ValueError, match="dot"):
        Interactions(kinds=("cosine", "dot"))
    with pytest.raises(ValueError):
        Interactions(kinds=())


def test_mlp_inference_matches_manual_computation():
    mlp = MLP(units=(3, 2), dropout=0.5, batch_norm=False)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    out = np.asarray(mlp(x, training=False))
    h = x
    for block in mlp._blocks:
        dense = block[0]
        kernel, bias = (np.asarray(w) for w in dense.weights)
        h = np.maximum(h @ kernel + bias, 0.0)
    np.testing.assert_allclose(out, h, rtol=1e-5, atol=1e-6)
    assert out.shape == (4, 2)


def test_mlp_validates_arguments():
    with pytest.raises(ValueError, match="units"):
        MLP(units=())
    with pytest.raises(ValueError, match="dropout"):
        MLP(units=(4,), dropout=1.0)


@pytest.mark.parametrize(
    "make_layer, make_inputs",
    [
        (lambda: MLP(units=(4, 3), dropout=0.2), lambda: np.ones((2, 5), "float32")),
        (
            lambda: Interactions(kinds=("cosine", "concat")),
            lambda: [np.ones((2, 4), "float32"), np.full((2, 4), 2.0, "float32")],
        ),
        (
            lambda: ProbabilityTransfer(),
            lambda: [np.full((2, 1), 0.5, "float32"), np.full((2, 1), 0.5, "float32")],
        ),
        (
            lambda: MultiGateExperts(3, 2, (4,), dropout=0.1, shared_output=True),
            lambda: np.ones((2, 5), "float32"),
        ),
        (
            lambda: CustomizedGateExperts(2, 1, 2, (4, 3)),
            lambda: [np.ones((2, 5), "float32")] * 3,
        ),
        (
            lambda: AttentionUnit(4),
            lambda: [np.ones((2, 4), "float32"), np.zeros((2, 6), "float32")],
        ),
        (
            lambda: MultiTaskLoss(("click", "atc")),
            lambda: [np.full((2, 1), 0.5, "float32"), np.full((2, 1), 0.2, "float32")],
        ),
    ],
)
def test_layer_contract(make_layer, make_inputs):
    """Config round trip, eager == symbolic shapes, and a one-step fit in a model."""
    layer = make_layer()
    inputs = make_inputs()
    eager = layer(inputs)
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    if isinstance(inputs, list):
        symbolic_in = [keras.Input(x.shape[1:]) for x in inputs]
    else:
        symbolic_in = keras.Input(inputs.shape[1:])
    symbolic = clone(symbolic_in)
    eager_list = eager if isinstance(eager, list) else [eager]
    symbolic_list = symbolic if isinstance(symbolic, list) else [symbolic]
    for e, s in zip(eager_list, symbolic_list, strict=True):
        assert tuple(e.shape[1:]) == tuple(s.shape[1:])
    head = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Concatenate()(symbolic_list) if len(symbolic_list) > 1 else symbolic_list[0]
    )
    model = keras.Model(symbolic_in, head)
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    history = model.fit(inputs, np.ones((2, 1), "float32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
