import math

import keras
import numpy as np
import pytest

from model.attention_unit import AttentionUnit
from model.expert_stack import ExpertStack
from model.experts import CustomizedGateExperts, MultiGateExperts
from model.mlp import MLP


def _set(dense, kernel, bias=None):
    weights = [np.asarray(kernel, "float32")]
    if dense.use_bias:
        weights.append(
            np.zeros(weights[0].shape[1], "float32")
            if bias is None
            else np.asarray(bias, "float32")
        )
    dense.set_weights(weights)


def test_multi_gate_experts_mix_with_softmax_gates():
    layer = MultiGateExperts(num_tasks=2, num_experts=2, expert_units=(2,), shared_output=True)
    x = np.array([[1.0, 2.0]], "float32")
    layer(x)
    # Expert i is (i + 1) * x through batch norm's initial inference transform.
    layer.experts.kernels[0].assign(np.concatenate([np.eye(2), 2 * np.eye(2)], axis=1))
    # Gate 0 prefers expert 0 (logits ln 3 vs 0), gate 1 is uniform, gate 2 prefers expert 1.
    _set(layer.gates, np.zeros((2, 6)), [math.log(3.0), 0, 0, 0, 0, math.log(3.0)])
    outs = [np.asarray(o) for o in layer(x, training=False)]
    e0, e1 = (x * (i + 1) / np.sqrt(1 + 1e-3) for i in range(2))
    np.testing.assert_allclose(outs[0], 0.75 * e0 + 0.25 * e1, rtol=1e-5)
    np.testing.assert_allclose(outs[1], 0.5 * e0 + 0.5 * e1, rtol=1e-5)
    np.testing.assert_allclose(outs[2], 0.25 * e0 + 0.75 * e1, rtol=1e-5)
    assert len(outs) == 3


def _randomize(layer, seed=0):
    """Random values in every weight, batch-norm statistics included (variances positive)."""
    rng = np.random.default_rng(seed)
    for v in layer.weights:
        value = rng.normal(size=v.shape)
        v.assign(np.abs(value) + 0.5 if "variance" in v.path else value)


@pytest.mark.parametrize("shared_input", [True, False])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("training", [False, True])
def test_expert_stack_equals_separate_mlps(shared_input, batch_norm, training):
    stack = ExpertStack(3, (4, 3), batch_norm=batch_norm)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6) if shared_input else (5, 3, 6)).astype("float32")
    stack(x)
    _randomize(stack)
    out = np.asarray(stack(x, training=training))
    for e in range(3):
        mlp = MLP((4, 3), batch_norm=batch_norm)
        x_e = x if shared_input else x[:, e]
        mlp(x_e)
        weights = []
        for i, units in enumerate((4, 3)):
            kernel = np.asarray(stack.kernels[i])
            kernel = (
                kernel[:, e * units : (e + 1) * units] if i == 0 and shared_input else kernel[e]
            )
            weights.append(kernel)
            cut = slice(e * units, (e + 1) * units)
            if batch_norm:
                weights += [np.asarray(v)[cut] for v in stack.norms[i].weights]
            else:
                weights.append(np.asarray(stack.biases[i])[cut])
        mlp.set_weights(weights)
        np.testing.assert_allclose(out[:, e], mlp(x_e, training=training), rtol=1e-4, atol=1e-5)


def test_customized_gates_see_own_and_shared_experts_only():
    layer = CustomizedGateExperts(
        2, num_specific_experts=1, num_shared_experts=1, expert_units=(3,)
    )
    a, b, shared = (np.full((1, 4), v, "float32") for v in (1.0, 2.0, 3.0))
    layer([a, b, shared])
    _randomize(layer)
    out_a, out_b = (np.asarray(o) for o in layer([a, b, shared], training=False))
    # Changing task b's input leaves task a's output unchanged.
    again_a, _ = (np.asarray(o) for o in layer([a, b * 5, shared], training=False))
    np.testing.assert_allclose(again_a, out_a, rtol=1e-6)
    # Each output is a convex mix of its own expert and the shared expert.
    own = np.asarray(layer.specific(np.stack([a, b], axis=1), training=False))[:, 0]
    common = np.asarray(layer.shared(shared, training=False))[:, 0]
    logits = a @ np.asarray(layer.gate_kernel)[0] + np.asarray(layer.gate_bias)[:2]
    gate = np.asarray(keras.ops.softmax(logits))
    np.testing.assert_allclose(out_a, gate[:, :1] * own + gate[:, 1:] * common, rtol=1e-5)
    with pytest.raises(ValueError, match="task inputs"):
        CustomizedGateExperts(2, 1, 1, (3,))([a, shared])


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: MLP((4, 3), dropout=0.1),
        lambda: MLP((4,), batch_norm=False),
        lambda: MultiGateExperts(3, 2, (4, 3), dropout=0.1, shared_output=True),
        lambda: CustomizedGateExperts(3, 2, 2, (4, 3), dropout=0.1),
        lambda: CustomizedGateExperts(2, 1, 0, (4,)),
    ],
)
def test_first_layer_parts_give_the_layer(make_layer):
    """call(x) == from_first_layer([x @ kernel + bias, ...]): what serving splits."""
    layer = make_layer()
    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    inputs = [x] * (layer.num_tasks + 1) if isinstance(layer, CustomizedGateExperts) else x
    whole = layer(inputs, training=False)
    _randomize(layer)
    whole = layer(inputs, training=False)
    parts = []
    for kernel, bias in layer.first_layer_parts():
        pre = x @ np.asarray(kernel)
        parts.append(pre if bias is None else pre + np.asarray(bias))
    split = layer.from_first_layer(parts, training=False)
    for w, s in zip(keras.tree.flatten(whole), keras.tree.flatten(split), strict=True):
        np.testing.assert_allclose(np.asarray(s), np.asarray(w), rtol=1e-4, atol=1e-5)


def test_attention_unit_by_hand():
    unit = AttentionUnit(units=2)
    tower = np.array([[1.0, 0.0]], "float32")
    previous = np.array([[0.0, 2.0]], "float32")
    unit([tower, previous])
    _set(unit.transfer, np.eye(2))  # q = relu(previous) = [0, 2]
    _set(unit.query, np.eye(2))
    _set(unit.key, np.eye(2))
    _set(unit.value, np.eye(2))
    out = np.asarray(unit([tower, previous]))
    # scores: <t, t>/sqrt(2) = 1/sqrt(2); <q, q>/sqrt(2) = 4/sqrt(2)
    s = np.array([1.0, 4.0]) / np.sqrt(2.0)
    w = np.exp(s) / np.exp(s).sum()
    np.testing.assert_allclose(out, [[w[0] * 1.0, w[1] * 2.0]], rtol=1e-5)
    with pytest.raises(ValueError, match="units"):
        AttentionUnit(units=3)([tower, previous])
