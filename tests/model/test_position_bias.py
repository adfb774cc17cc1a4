"""Position-bias-aware training: the examination layer, its place in the loss, and what it
learns from a log whose clicks depend on the display position."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from contract import schema as S
from model.multitask_loss import MultiTaskLoss, MultiTaskRanker, loss_layer
from model.position_bias import PositionBias


def test_unknown_positions_are_always_examined_and_deep_ones_share_a_bucket():
    bias = PositionBias(buckets=3)
    bias.build()
    bias.examination_logits.assign([0.0, 1.0, 2.0])
    positions = ops.convert_to_tensor([[0.0], [1.0], [1.4], [2.0], [3.0], [40.0]])
    got = ops.convert_to_numpy(bias(positions))[:, 0]
    expected = [1.0, *(math.exp(-math.log1p(math.exp(v))) for v in (0.0, 0.0, 1.0, 2.0, 2.0))]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_the_loss_trains_the_prediction_times_the_examination():
    layer = MultiTaskLoss(("click",), balancing="fixed", position_buckets=2)
    p = {"click": ops.convert_to_tensor([[0.8], [0.8]])}
    layer([p["click"]])
    layer.position_bias.examination_logits.assign([0.0, math.log(math.e**2 - 1)])  # 1/2, 1/e^2
    y = {
        "click": ops.convert_to_tensor([[1.0], [0.0]]),
        S.POSITION: ops.convert_to_tensor([[1.0], [2.0]]),
    }
    expected = -(math.log(0.8 * 0.5) + math.log(1 - 0.8 * math.exp(-2))) / 2
    assert float(layer.total(y, p)) == pytest.approx(expected, rel=1e-5)
    # Without a position in the labels, or with the bias off, the plain loss.
    plain = -(math.log(0.8) + math.log(0.2)) / 2
    assert float(layer.total({"click": y["click"]}, p)) == pytest.approx(plain, rel=1e-5)
    off = MultiTaskLoss(("click",), balancing="fixed")
    off([p["click"]])
    assert float(off.total(y, p)) == pytest.approx(plain, rel=1e-5)


def _logged_clicks(n=6000, seed=0):
    """Relevance depends on x alone; the old ranking put relevant-looking z on top, so the
    position (and with it the click) follows z, which says nothing of relevance."""
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.normal(size=n)
    position = np.clip(np.round(3 - 1.5 * z + rng.normal(0, 0.5, n)), 1, 5)
    relevance = 1 / (1 + np.exp(-(2 * x - 0.5)))
    clicked = rng.random(n) < relevance / position
    features = np.stack([x, z], axis=1).astype("float32")
    return features, clicked.astype("float32")[:, None], position.astype("float32")[:, None]


def _click_model(position_buckets):
    keras.utils.set_random_seed(0)
    features = keras.Input((2,), name="features")
    head = keras.layers.Dense(1, activation="sigmoid", name="click_head")(features)
    head = MultiTaskLoss(
        ("click",), balancing="fixed", position_buckets=position_buckets,
        name=MultiTaskRanker.LOSS_LAYER,
    )([head])[0]  # fmt: skip
    model = MultiTaskRanker(inputs={"features": features}, outputs={"click": head})
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    return model


@pytest.mark.parametrize("position_buckets", [0, 5])
def test_position_bias_aware_training_learns_relevance_not_position(position_buckets):
    features, clicked, position = _logged_clicks()
    labels = {"click": clicked, S.POSITION: position}
    data = tf.data.Dataset.from_tensor_slices(({"features": features}, labels)).batch(256)
    model = _click_model(position_buckets)
    model.fit(data, epochs=15, verbose=0)
    weight_x, weight_z = model.get_layer("click_head").get_weights()[0][:, 0]
    if position_buckets:
        # The position effect went into the examination, not into z's weight.
        assert abs(weight_z) < 0.25 * weight_x
        examined = ops.convert_to_numpy(
            loss_layer(model).position_bias(ops.convert_to_tensor([[1.0], [3.0], [5.0]]))
        )[:, 0]
        assert examined[0] > examined[1] > examined[2]
        assert examined[2] / examined[0] == pytest.approx(1 / 5, abs=0.1)
    else:
        # Trained on the clicks as they are, z looks as relevant as x.
        assert weight_z > 0.5 * weight_x


def test_the_examination_weights_survive_a_keras_file(tmp_path):
    model = _click_model(position_buckets=4)
    loss_layer(model).position_bias.examination_logits.assign([0.1, 0.2, 0.3, 0.4])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        ops.convert_to_numpy(loss_layer(loaded).position_bias.examination_logits),
        [0.1, 0.2, 0.3, 0.4],
    )
