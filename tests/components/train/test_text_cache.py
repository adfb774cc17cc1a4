"""The frozen encoder's cache: each distinct text encoded once, with dynamic padding, reused
by a later run, and a ranker trained on it that scores as the full graph does."""

import dataclasses
import json

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components.train.config import TrainConfig
from components.train.inputs import read_split, split_files
from components.train.text_cache import TextCache
from components.train.training import run_training
from conftest import synthetic_splits, transformed_dataset
from contract import layout
from contract import schema as S
from model.config import RankerConfig
from model.encoder import TextEncoder
from model.ranker import cached_ranker
from model.text_preprocessor import TextPreprocessor

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "blue", "boots", "shoes", "x"]
TEXTS = [b"red boots", b"blue", b"red blue shoes x x x", b"boots boots", b"x"]


def _encoder(fine_tune_layers):
    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=2, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=12,
    )  # fmt: skip
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True)
    return TextEncoder(backbone, fine_tune_layers=fine_tune_layers), TextPreprocessor(
        tokenizer, 6, 10
    )


def _full_padding(encoder, preprocessor, texts):
    tokens = preprocessor(tf.zeros([0], tf.string), tf.constant(texts))
    ids, mask = tokens["product_token_ids"], tokens["product_padding_mask"]
    return np.asarray(encoder({"token_ids": ids, "padding_mask": mask})), np.asarray(mask)


def test_frozen_vectors_equal_the_encoder_at_full_padding_and_are_reused(tmp_path):
    encoder, preprocessor = _encoder(0)
    cache = TextCache(str(tmp_path), encoder, preprocessor)
    got = cache.get("product", TEXTS).vectors()
    expected, _ = _full_padding(encoder, preprocessor, TEXTS)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert cache.stats["texts_encoded"] == len(TEXTS)

    again = TextCache(str(tmp_path), encoder, preprocessor)
    rows = again.get("product", [TEXTS[2], TEXTS[0], TEXTS[2]]).vectors()
    np.testing.assert_array_equal(rows, got[[2, 0, 2]])
    assert again.stats == {"texts_encoded": 0, "texts_reused": 2, "encode_seconds": 0.0}
    # The same text on the query side is another key (another packed length).
    again.get("query", [TEXTS[0]])
    assert again.stats["texts_encoded"] == 1


def test_another_encoder_gets_another_cache(tmp_path):
    encoder, preprocessor = _encoder(0)
    first = TextCache(str(tmp_path), encoder, preprocessor)
    first.get("product", TEXTS)
    encoder.backbone.transformer_layers[0].weights[0].assign_add(
        np.ones(encoder.backbone.transformer_layers[0].weights[0].shape, "float32")
    )
    second = TextCache(str(tmp_path), encoder, preprocessor)
    assert second.fingerprint != first.fingerprint
    second.get("product", TEXTS)
    assert second.stats["texts_encoded"] == len(TEXTS)


def test_partly_fine_tuned_encoder_caches_token_vectors_per_text(tmp_path):
    encoder, preprocessor = _encoder(1)
    rows = TextCache(str(tmp_path), encoder, preprocessor).get("product", TEXTS)
    _, mask = _full_padding(encoder, preprocessor, TEXTS)
    np.testing.assert_array_equal(np.diff(rows.offsets), mask.sum(axis=1))
    assert not rows.pooled and rows.values.shape[1] == 8
    # The trained block over the cached token vectors gives the encoder's output.
    expected, _ = _full_padding(encoder, preprocessor, TEXTS)
    for i in range(len(TEXTS)):
        hidden = rows.values[rows.offsets[i] : rows.offsets[i + 1]][None]
        pooled = encoder.encode_top(hidden, np.ones(hidden.shape[:2], "int32"))
        np.testing.assert_allclose(np.asarray(pooled)[0], expected[i], atol=1e-5)


FROZEN = TrainConfig(
    max_epochs=2,
    batch_size=32,
    learning_rate=5e-3,
    ranker=RankerConfig(
        projection_dim=16,
        num_shared_experts=2,
        expert_units=(32, 16),
        tower_units=(8,),
        fine_tune_layers=0,
    ),
)


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("frozen")
    transformed_dataset(root, synthetic_splits(256, 64, 64), S.DEMO_SCHEMA)
    config = dataclasses.replace(FROZEN, text_cache_dir=str(root / "cache"))
    run_training(str(root / "tft"), str(root / "tx"), str(root / "model"), config, verbose=0)
    return root, config


def _info(path):
    with open(path / layout.TRAIN_INFO_FILE) as fh:
        return json.load(fh)["result"]


def test_frozen_training_uses_the_cache_and_serves_the_same_scores(frozen_run):
    """The SavedModel runs the whole encoder on raw text; the cached ranker looks the
    frozen encoder's outputs up: the same scores to 1e-5."""
    root, config = frozen_run
    stats = _info(root / "model")["text_cache"]
    assert stats["texts_encoded"] == stats["queries"] + stats["products"] > 0
    model = keras.saving.load_model(str(root / "model" / layout.KERAS_MODEL_FILE))
    tft_output = tft.TFTransformOutput(str(root / "tft"))
    split = read_split(split_files(str(root / "tx"), "test"), tft_output, S.DEFAULT_TASKS)
    tokenizer = keras_hub.models.Tokenizer.from_preset(str(root / "model" / "encoder_preset"))
    preprocessor = TextPreprocessor(tokenizer, config.query_length, config.product_length)
    cache = TextCache(config.text_cache_dir, model.text_encoder, preprocessor)
    inputs = {
        "query_vector": cache.get("query", list(split[S.QUERY])).vectors(),
        "product_vector": cache.get("product", list(split[S.PRODUCT_TEXT])).vectors(),
        **{
            n: split[n]
            for n in (S.WIDE, *(S.vocab_id_name(c) for c in S.CATEGORICAL_COLUMNS), S.MARKET_ID)
        },
    }
    assert cache.stats["texts_encoded"] == len(set(split[S.QUERY]) - _train_eval_queries(root))
    cached = cached_ranker(model).predict(inputs, verbose=0)
    loaded = tf.saved_model.load(str(root / "model" / layout.SAVED_MODEL_DIR))
    raw = _raw_test_examples(root)
    out = loaded.signatures["score_examples"](examples=tf.constant(raw))
    position = {k: i for i, k in enumerate(zip(split[S.QUERY], split[S.PRODUCT_ID], strict=True))}
    order = [position[_key(example)] for example in raw]
    for task in S.DEFAULT_TASKS:
        np.testing.assert_allclose(out[task].numpy(), cached[task].reshape(-1)[order], atol=1e-5)


def _key(serialized: bytes) -> tuple[bytes, bytes]:
    feature = tf.train.Example.FromString(serialized).features.feature
    return feature[S.QUERY].bytes_list.value[0], feature[S.PRODUCT_ID].bytes_list.value[0]


def _train_eval_queries(root) -> set:
    tft_output = tft.TFTransformOutput(str(root / "tft"))
    return {
        q
        for split in ("train", "eval")
        for q in read_split(split_files(str(root / "tx"), split), tft_output, S.DEFAULT_TASKS)[
            S.QUERY
        ]
    }


def _raw_test_examples(root) -> list[bytes]:
    from conftest import raw_examples

    return raw_examples(str(root / "raw"), "test")


def test_a_second_run_reuses_the_cache_and_trains_the_same_model(frozen_run, tmp_path):
    root, config = frozen_run
    run_training(str(root / "tft"), str(root / "tx"), str(tmp_path), config, verbose=0)
    first, second = _info(root / "model"), _info(tmp_path)
    assert second["text_cache"]["texts_encoded"] == 0
    assert second["text_cache"]["texts_reused"] == first["text_cache"]["texts_encoded"]
    assert second["history"] == first["history"]
