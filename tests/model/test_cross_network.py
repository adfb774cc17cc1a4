"""DCN-V2's cross network: its formula by hand, its serving split, its configuration."""

import keras
import numpy as np
import pytest

from model.architectures import architecture
from model.cross_network import CrossNetwork


def test_one_cross_layer_by_hand():
    cross = CrossNetwork(num_layers=1)
    x0 = np.array([[1.0, 2.0]], "float32")
    cross(x0)
    cross.kernels[0].assign([[1.0, 0.0], [1.0, 2.0]])
    cross.biases[0].assign([0.5, -1.0])
    # x0 @ W + b = (1 + 2 + 0.5, 0 + 4 - 1) = (3.5, 3); x1 = x0 * that + x0
    np.testing.assert_allclose(np.asarray(cross(x0)), [[1 * 3.5 + 1, 2 * 3.0 + 2]])


def test_two_cross_layers_by_hand():
    cross = CrossNetwork(num_layers=2)
    x0 = np.array([[1.0, -1.0]], "float32")
    cross(x0)
    for kernel in cross.kernels:
        kernel.assign(np.eye(2))
    # x1 = x0 * x0 + x0 = (2, 0); x2 = x0 * (x1 @ I) + x1 = (2 + 2, 0 + 0)
    np.testing.assert_allclose(np.asarray(cross(x0)), [[4.0, 0.0]])


def test_the_first_layer_parts_give_the_network():
    """call(x) == from_first_layer([x @ kernel + bias, ...]): what serving splits."""
    cross = CrossNetwork(num_layers=3)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    cross(x)
    for bias in cross.biases:
        bias.assign(np.random.default_rng(1).normal(size=4))
    parts = []
    for kernel, bias in cross.first_layer_parts():
        pre = x @ np.asarray(kernel)
        parts.append(pre if bias is None else pre + np.asarray(bias))
    np.testing.assert_allclose(
        np.asarray(cross.from_first_layer(parts)), np.asarray(cross(x)), rtol=1e-5, atol=1e-5
    )


def test_it_survives_a_keras_file(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, CrossNetwork(2, name="cross")(inputs))
    x = np.random.default_rng(2).normal(size=(4, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)


def test_dcn_v2_is_a_cross_network_under_a_deep_bottom():
    config = architecture("dcn_v2")
    assert config.cross_layers == 3 and config.shared_bottom_units
    assert not (config.multi_gate_experts or config.specific_experts or config.attention_units)
    assert config.loss_balancing == "fixed"
    with pytest.raises(ValueError, match="num_layers"):
        CrossNetwork(0)
