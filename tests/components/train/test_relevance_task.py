"""The engagement relevance label as an extra training task (RankerConfig.relevance_task): the
train step labels each row from its split, the ranker learns it in a tower of its own, and
serving keeps to the funnel's outputs."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components.train.config import train_config
from components.train.inputs import read_split, split_files
from components.train.training import relevance_targets, run_training
from components.transform.relevance import spearman_per_query
from conftest import SMALL_RANKER, TINY_TRAINING, synthetic_splits, transformed_dataset
from contract import layout
from contract import schema as S
from model.multitask_loss import loss_layer

SETTINGS = dict(TINY_TRAINING, max_epochs=2)
SMALL = {**SMALL_RANKER, "relevance_task": True}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("relevance")
    splits = synthetic_splits(384, 64, 64)
    rng = np.random.default_rng(4)
    for rows in splits.values():  # impressions and positions that vary, as a log's do
        for row in rows:
            row[S.IMPRESSIONS] = int(rng.integers(6, 40))
            row[S.CLICKS] = min(row[S.CLICKS] * int(rng.integers(1, 6)), row[S.IMPRESSIONS])
            row[S.POSITION] = float(rng.integers(1, 10))
    transformed_dataset(root, splits, S.DEMO_SCHEMA)
    return root


def test_the_label_ranks_each_querys_pairs_by_debiased_click_rate(data, tmp_path):
    config = train_config(**SETTINGS, **SMALL, text_cache_dir=str(tmp_path / "cache")).for_tasks(
        S.DEFAULT_TASKS
    )
    split = read_split(
        split_files(str(data / "tx"), "train"),
        tft.TFTransformOutput(str(data / "tft")),
        S.DEFAULT_TASKS,
    )
    label = relevance_targets(split, config)
    assert label.shape == (len(split[S.WIDE]),) and label.dtype == np.float32
    assert label.min() >= 0.0 and label.max() <= 1.0
    # Within-query percentiles: each query's labels average 0.5.
    query = split[S.QUERY]
    for q in np.unique(query):
        assert label[query == q].mean() == pytest.approx(0.5, abs=1e-5)
    # Mostly the click rate over the examined impressions (weight 0.75), some similarity.
    examined_rate = split["click_rate"] * np.maximum(split[S.POSITION], 1.0)
    rho, queries = spearman_per_query(query, label, examined_rate)
    assert queries >= 5 and rho > 0.6


def test_training_learns_the_relevance_task_beside_the_funnel(data, tmp_path):
    config = train_config(**SETTINGS, **SMALL, text_cache_dir=str(tmp_path / "c"))
    out = tmp_path / "model"
    result = run_training(str(data / "tft"), str(data / "tx"), str(out), config, verbose=0)
    assert {"relevance_loss", "val_relevance_loss"} <= set(result.history)
    assert all(np.isfinite(result.history["val_relevance_loss"]))
    model = keras.saving.load_model(str(out / layout.KERAS_MODEL_FILE))
    layer = loss_layer(model)
    assert layer.tasks == (*S.DEFAULT_TASKS, S.RELEVANCE_TASK) and layer.funnel_size == 3
    info = json.loads((out / layout.TRAIN_INFO_FILE).read_text())
    assert info["config"]["ranker"]["relevance_task"] is True
    # Serving keeps to the funnel: one probability per task and the score.
    served = tf.saved_model.load(str(out / layout.SAVED_MODEL_DIR))
    outputs = served.signatures["score_examples"].structured_outputs
    assert sorted(outputs) == sorted([*S.DEFAULT_TASKS, "score"])


def test_the_relevance_task_needs_the_cached_encoder_outputs():
    with pytest.raises(ValueError, match="relevance task trains with the encoder's outputs"):
        train_config(**{**SETTINGS, "fine_tune_layers": "all"}, **SMALL)
