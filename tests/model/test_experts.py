import keras
import numpy as np
import pytest

from model.attention_unit import AttentionUnit
from model.experts import CustomizedGateExperts, MultiGateExperts


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
    # Identity-like experts without batch norm effects at inference: set the Dense kernels.
    for i, expert in enumerate(layer.experts):
        _set(expert._blocks[0][0], np.eye(2) * (i + 1))
    # Gate 0 prefers expert 0 (logits 0 vs ln 3), gate 1 is uniform, gate 2 prefers expert 1.
    _set(layer.gates[0], np.zeros((2, 2)), [math_log(3.0), 0.0])
    _set(layer.gates[1], np.zeros((2, 2)))
    _set(layer.gates[2], np.zeros((2, 2)), [0.0, math_log(3.0)])
    outs = [np.asarray(o) for o in layer(x, training=False)]
    e0, e1 = _expert_out(layer, 0, x), _expert_out(layer, 1, x)
    np.testing.assert_allclose(outs[0], 0.75 * e0 + 0.25 * e1, rtol=1e-5)
    np.testing.assert_allclose(outs[1], 0.5 * e0 + 0.5 * e1, rtol=1e-5)
    np.testing.assert_allclose(outs[2], 0.25 * e0 + 0.75 * e1, rtol=1e-5)
    assert len(outs) == 3


def math_log(v):
    import math

    return math.log(v)


def _expert_out(layer, i, x):
    return np.asarray(layer.experts[i](x, training=False))


def test_customized_gates_see_own_and_shared_experts_only():
    layer = CustomizedGateExperts(
        2, num_specific_experts=1, num_shared_experts=1, expert_units=(3,)
    )
    a, b, shared = (np.full((1, 4), v, "float32") for v in (1.0, 2.0, 3.0))
    out_a, out_b = (np.asarray(o) for o in layer([a, b, shared], training=False))
    # Changing task b's input leaves task a's output unchanged.
    again_a, _ = (np.asarray(o) for o in layer([a, b * 5, shared], training=False))
    np.testing.assert_allclose(again_a, out_a, rtol=1e-6)
    # Each output is a convex mix of its own expert and the shared expert.
    own = np.asarray(layer.specific[0][0](a, training=False))
    common = np.asarray(layer.shared[0](shared, training=False))
    gate = np.asarray(keras.ops.softmax(layer.gates[0](a)))
    np.testing.assert_allclose(out_a, gate[:, :1] * own + gate[:, 1:] * common, rtol=1e-5)
    with pytest.raises(ValueError, match="task inputs"):
        CustomizedGateExperts(2, 1, 1, (3,))([a, shared])


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
