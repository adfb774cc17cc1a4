import keras
import numpy as np
import pytest

from model.optimizer import EncoderAwareAdamW


def _two_layers():
    inputs = keras.Input((4,))
    slow = keras.layers.Dense(3, name="slow")
    fast = keras.layers.Dense(1, name="fast")
    model = keras.Model(inputs, fast(slow(inputs)))
    return model, slow, fast


def test_slow_variables_take_their_share_of_the_learning_rate():
    keras.utils.set_random_seed(0)
    model, slow, fast = _two_layers()
    optimizer = EncoderAwareAdamW(
        [v.path for v in slow.trainable_variables], 0.1, learning_rate=1e-3, weight_decay=0.0
    )
    model.compile(optimizer=optimizer, loss="mse")
    before = {v.path: np.array(v) for v in model.trainable_variables}
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    model.train_on_batch(x, x.sum(axis=1, keepdims=True) + 10.0)
    # Adam's first step moves every weight with a non-zero gradient by the learning rate.
    for v in model.trainable_variables:
        step = np.abs(np.array(v) - before[v.path])
        expected = 1e-4 if v.path.startswith("slow/") else 1e-3
        np.testing.assert_allclose(step, expected, rtol=1e-3, err_msg=v.path)


def test_config_round_trip_and_checks():
    optimizer = EncoderAwareAdamW(["a/kernel"], 0.02, learning_rate=1e-3)
    clone = EncoderAwareAdamW.from_config(optimizer.get_config())
    assert clone.slow_variable_paths == ("a/kernel",)
    assert clone.slow_learning_rate_multiplier == 0.02
    with pytest.raises(ValueError, match=r"in \(0, 1\], got 2"):
        EncoderAwareAdamW(["a/kernel"], 2)
