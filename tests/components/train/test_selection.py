"""The epoch kept is chosen for ranking, and a trained epoch replaces the untrained model only
if it ranks the eval queries better by more than chance (components/train/selection.py).

A hand-made scorer, one weight per feature, stands in for the ranker: its rankings, and so
every query's NDCG@5, are known before the callback scores them."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.train.selection import RankingSelection

TASKS = ("click", "atc")
ITEMS = 3  # per query; the first item of each query is the one engaged with


def scorer() -> keras.Model:
    """score = sigmoid(x @ w), the same for both tasks; w starts at (1, 0)."""
    x = keras.Input((2,), name="x")
    dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="w")
    logit = dense(x)
    model = keras.Model({"x": x}, {t: keras.layers.Activation("sigmoid")(logit) for t in TASKS})
    dense.kernel.assign([[1.0], [0.0]])
    return model


def eval_split(queries: int, helped: int):
    """`queries` queries of ITEMS items. Feature 0 puts the engaged item last in every query;
    feature 1 puts it first in the first `helped` queries and last in the others."""
    x, query, label = [], [], []
    for q in range(queries):
        for i in range(ITEMS):
            engaged = i == 0
            bad = -1.0 if engaged else float(i)  # the engaged item scores lowest
            good = (2.0 if engaged else float(-i)) if q < helped else bad
            x.append([bad, good])
            query.append(q)
            label.append(1.0 if engaged else 0.0)
    data = tf.data.Dataset.from_tensor_slices({"x": np.array(x, np.float32)}).batch(16)
    labels = {t: np.array(label) for t in TASKS}
    return data, np.array(query), labels


def run(model, selection, trained_weights):
    """One epoch whose training sets the weights to `trained_weights`."""
    selection.set_model(model)
    selection.on_train_begin()
    model.get_layer("w").kernel.assign(trained_weights)
    selection.on_epoch_end(0, {})
    selection.on_train_end()
    return model.get_layer("w").kernel.numpy().ravel()


@pytest.mark.parametrize("p_value", [0.05, 1.0])
def test_a_gain_on_every_query_keeps_the_trained_epoch(p_value):
    model = scorer()
    data, query, labels = eval_split(queries=20, helped=20)
    selection = RankingSelection(data, query, labels, TASKS, p_value=p_value)
    weights = run(model, selection, [[0.0], [1.0]])
    assert weights == pytest.approx([0.0, 1.0])
    assert selection.best_epoch == 1
    assert selection.initial["val_ndcg@5"] == pytest.approx(0.5)  # 1 / log2(4)
    assert selection.best == pytest.approx(1.0)
    assert selection.summary()["gain_p_value"] == 0.0
    assert selection.summary()["kept_untrained"] == ""


def test_a_gain_on_a_few_queries_keeps_the_untrained_model(tmp_path):
    """The trained epoch ranks 2 of 20 queries better and none worse: its mean NDCG@5 is higher,
    but a one-sided paired test over the queries gives p = 0.08 > 0.05."""
    model = scorer()
    data, query, labels = eval_split(queries=20, helped=2)
    checkpoint = str(tmp_path / "best.weights.h5")
    selection = RankingSelection(data, query, labels, TASKS, p_value=0.05, checkpoint=checkpoint)
    weights = run(model, selection, [[0.0], [1.0]])
    assert weights == pytest.approx([1.0, 0.0])  # the untrained weights, restored
    saved = scorer()
    saved.get_layer("w").kernel.assign([[5.0], [5.0]])
    saved.load_weights(checkpoint)  # the best-weights file holds them too, not the declined epoch
    assert saved.get_layer("w").kernel.numpy().ravel() == pytest.approx([1.0, 0.0])
    assert selection.best_epoch == 0
    assert selection.best == pytest.approx(0.5)
    p = selection.summary()["gain_p_value"]
    assert 0.05 < p < 0.1
    reason = selection.summary()["kept_untrained"]
    assert "epoch 1" in reason and "p = 0.0" in reason and "20 queries" in reason


def test_without_the_p_value_a_gain_on_a_few_queries_is_kept():
    model = scorer()
    data, query, labels = eval_split(queries=20, helped=2)
    selection = RankingSelection(data, query, labels, TASKS, p_value=1.0)
    weights = run(model, selection, [[0.0], [1.0]])
    assert weights == pytest.approx([0.0, 1.0])
    assert selection.best_epoch == 1
    assert selection.best == pytest.approx(0.55)
    assert 0.05 < selection.summary()["gain_p_value"] < 0.1


def test_an_epoch_that_ranks_worse_is_never_kept():
    model = scorer()
    data, query, labels = eval_split(queries=20, helped=20)
    selection = RankingSelection(data, query, labels, TASKS, p_value=1.0)
    selection.set_model(model)
    model.get_layer("w").kernel.assign([[0.0], [1.0]])  # start from the good ranking
    selection.on_train_begin()
    model.get_layer("w").kernel.assign([[1.0], [0.0]])
    selection.on_epoch_end(0, {})
    selection.on_train_end()
    assert model.get_layer("w").kernel.numpy().ravel() == pytest.approx([0.0, 1.0])
    assert selection.best_epoch == 0 and selection.summary()["kept_untrained"] == ""


def test_the_state_survives_a_backup():
    """A run resumed after a kill decides as the uninterrupted one would."""
    model = scorer()
    data, query, labels = eval_split(queries=20, helped=2)
    first = RankingSelection(data, query, labels, TASKS, p_value=0.05)
    first.set_model(model)
    first.on_train_begin()
    model.get_layer("w").kernel.assign([[0.0], [1.0]])
    first.on_epoch_end(0, {})
    state, arrays = first.backup_state()

    resumed = RankingSelection(data, query, labels, TASKS, p_value=0.05)
    resumed.set_model(model)
    resumed.on_train_begin()  # scores the trained weights as "initial": the state corrects it
    resumed.restore_state(state, arrays)
    resumed.on_train_end()
    assert model.get_layer("w").kernel.numpy().ravel() == pytest.approx([1.0, 0.0])
    assert resumed.best_epoch == 0 and resumed.kept_untrained


def test_p_value_is_checked():
    data, query, labels = eval_split(queries=2, helped=1)
    with pytest.raises(ValueError, match="p_value must be in"):
        RankingSelection(data, query, labels, TASKS, p_value=0.0)
