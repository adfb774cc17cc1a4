"""The region mask: the identity untrained, 2 sigmoid(e_m) per market once learned."""

import math

import keras
import numpy as np
import pytest

from model.region_mask import RegionMask


def test_untrained_it_is_the_identity_for_every_market():
    mask = RegionMask(markets=3)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    out = mask([x, np.array([0, 1, 2, 1])])
    np.testing.assert_array_equal(np.asarray(out), x)


def test_each_market_scales_each_unit_by_two_sigmoid_of_its_logit():
    mask = RegionMask(markets=2, rate=1.0)
    x = np.array([[1.0, 2.0], [1.0, 2.0]], "float32")
    mask([x, np.array([0, 1])])
    mask.market_logits.assign([[0.0, 1.0], [-2.0, 0.0]])
    out = np.asarray(mask([x, np.array([1, 0])]))

    def two_sigmoid(z):
        return 2.0 / (1.0 + math.exp(-z))

    # Row 0 is market 1: (1 x 2 sigmoid(-2), 2 x 1); row 1 is market 0: (1 x 1, 2 x 2 sigmoid(1)).
    np.testing.assert_allclose(out[0], [two_sigmoid(-2.0), 2.0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [1.0, 2.0 * two_sigmoid(1.0)], rtol=1e-6)
    # An id beyond the vocabulary is the last market; [batch, 1] ids work as [batch] ones.
    beyond = np.asarray(mask([x, np.array([[7], [0]])]))
    np.testing.assert_allclose(beyond, out[[0, 1]], rtol=1e-6)
    # `rate` scales the logits: at rate 2, market 1's first unit is 2 sigmoid(-4).
    fast = RegionMask(markets=2, rate=2.0)
    fast([x, np.array([0, 1])])
    fast.market_logits.assign(mask.market_logits)
    out = np.asarray(fast([x, np.array([1, 0])]))
    np.testing.assert_allclose(out[0, 0], two_sigmoid(-4.0), rtol=1e-6)


def test_it_learns_a_preference_that_flips_between_markets():
    """y = x in market 0 and -x in market 1: a linear model without the mask cannot fit both;
    masked before a shared Dense, each market turns up units of its own."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(512, 1)).astype("float32")
    market = rng.integers(0, 2, 512).astype("int32")
    y = np.where(market == 0, x[:, 0], -x[:, 0]).reshape(-1, 1)

    def fit(masked: bool) -> float:
        keras.utils.set_random_seed(0)
        inputs, ids = keras.Input((1,)), keras.Input((), dtype="int32")
        hidden = keras.layers.Dense(4, use_bias=False)(inputs)
        if masked:
            hidden = RegionMask(2)([hidden, ids])
        model = keras.Model([inputs, ids], keras.layers.Dense(1, use_bias=False)(hidden))
        model.compile(keras.optimizers.Adam(0.05), "mse")
        model.fit([x, market], y, epochs=60, batch_size=128, verbose=0)
        return float(model.evaluate([x, market], y, verbose=0))

    assert fit(masked=True) < 0.2 < 0.8 < fit(masked=False)


def test_bad_market_count_and_a_keras_file(tmp_path):
    with pytest.raises(ValueError, match="markets"):
        RegionMask(0)
    with pytest.raises(ValueError, match="rate"):
        RegionMask(2, rate=0.0)
    inputs, ids = keras.Input((3,)), keras.Input((), dtype="int32")
    layer = RegionMask(2, name="mask")
    model = keras.Model([inputs, ids], layer([inputs, ids]))
    layer.market_logits.assign(np.arange(6, dtype="float32").reshape(2, 3) - 2.0)
    x = [np.ones((2, 3), "float32"), np.array([0, 1], "int32")]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)
