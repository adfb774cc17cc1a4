"""The pretrain step: the negative sampler, the training lists, and the preset it writes
(saved, loaded back and copied into the ranker)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from kfp import dsl

from components import layout
from components import schema as S
from components.pretrain.pretrain import (
    INFO_FILE,
    EngagementData,
    PretrainConfig,
    load_projections,
    run_pretrain,
    training_lists,
)
from components.pretrain.sampler import NegativeSampler


def test_sampler_draws_the_ratio_and_never_a_positive():
    sampler = NegativeSampler(num_products=30, ratio=20, seed=0)
    positives = {0, 3, 7, 11, 29}
    for _ in range(50):
        negatives = sampler.sample(positives)
        assert len(negatives) == 20 * len(positives)
        assert not set(negatives.tolist()) & positives
        assert negatives.min() >= 0 and negatives.max() < 30
    # Over many draws every non-engaged product comes up: the draw is from the whole catalog.
    seen = set(np.concatenate([sampler.sample(positives) for _ in range(20)]).tolist())
    assert seen == set(range(30)) - positives
    assert len(sampler.sample({1}, count=7)) == 7


def test_sampler_refuses_what_cannot_be_drawn():
    with pytest.raises(ValueError, match="ratio must be at least 1"):
        NegativeSampler(10, ratio=0)
    with pytest.raises(ValueError, match="every one of the 3 products is engaged"):
        NegativeSampler(3).sample({0, 1, 2})


def test_training_lists_rank_engaged_products_by_grade_above_random_ones():
    data = EngagementData(
        product_ids=[f"p{i}" for i in range(40)],
        product_texts=[f"text {i}" for i in range(40)],
        engaged={"boots": {0: 1, 1: 3, 2: 2}, "lamp": {5: 1}},
    )
    config = PretrainConfig(max_positives=2, ratio=5)
    lists = list(
        training_lists(data, config, NegativeSampler(40, 5, seed=1), np.random.default_rng(0))
    )
    assert sorted(q for q, *_ in lists) == ["boots", "lamp"]
    by_query = {q: (products, target, mask) for q, products, target, mask in lists}
    products, target, mask = by_query["boots"]
    assert len(products) == 2 * (1 + 5)
    # The two best grades (purchase, add-to-cart), weighted 2^grade - 1 = 7 and 3.
    assert products[:2].tolist() == [1, 2]
    np.testing.assert_allclose(target[:2], [0.7, 0.3])
    assert mask.sum() == 12 and target[2:].sum() == 0
    assert not set(products[2:].tolist()) & {0, 1, 2}
    products, target, mask = by_query["lamp"]
    assert mask.sum() == 6 and target[0] == 1.0 and products[0] == 5  # padded after 6


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from conftest import synthetic_splits, transformed_dataset

    root = tmp_path_factory.mktemp("pretrain")
    dirs = transformed_dataset(root, synthetic_splits(160, 60, 20), S.DEMO_SCHEMA)
    config = PretrainConfig(epochs=2, queries_per_batch=4, ratio=3, projection_dim=16)
    info = run_pretrain(dirs["tft"], dirs["tx"], str(root / "preset"), config)
    return dirs, root / "preset", info


def test_preset_round_trip(pretrained):
    import keras_hub

    from model.encoder import TextEncoder
    from model.presets import load_encoder
    from model.text_preprocessor import TextPreprocessor

    _, preset, info = pretrained
    saved = json.loads((preset / INFO_FILE).read_text())
    assert saved["config"]["ratio"] == 3 and len(saved["loss_by_epoch"]) == 2
    for when in ("eval_before", "eval_after"):
        assert 0.0 <= saved[when]["recall@10"] <= 1.0 and saved[when]["queries"] > 0
    # The directory is a keras-hub preset: the backbone and tokenizer load back as they were.
    backbone, tokenizer = load_encoder(str(preset))
    again = keras_hub.models.Backbone.from_preset(str(preset))
    tokens = TextPreprocessor(tokenizer, 8, 8)(
        tf.constant(["red boots"]), tf.constant(["oak lamp"])
    )
    inputs = {"token_ids": tokens["query_token_ids"], "padding_mask": tokens["query_padding_mask"]}
    np.testing.assert_allclose(
        TextEncoder(backbone)(inputs).numpy(), TextEncoder(again)(inputs).numpy(), rtol=1e-6
    )
    assert tokenizer.vocabulary_size() > 10
    projections = load_projections(str(preset))
    assert projections["query_kernel"].shape == (backbone.hidden_dim, 16)
    assert projections["product_bias"].shape == (16,)


def test_train_starts_from_the_pretrained_encoder_and_projections(pretrained):
    import tensorflow_transform as tft

    from components.train.config import TrainConfig
    from components.train.inputs import split_files
    from components.train.train import build_model
    from model.architectures import architecture
    from model.ranker import PRODUCT_PROJECTION, QUERY_PROJECTION

    dirs, preset, _ = pretrained
    config = TrainConfig(
        encoder_preset=str(preset), ranker=architecture("mlp_mtl").replace(projection_dim=16)
    )
    model, *_ = build_model(
        config, tft.TFTransformOutput(dirs["tft"]), split_files(dirs["tx"], "train")
    )
    saved = load_projections(str(preset))
    np.testing.assert_array_equal(
        model.get_layer(QUERY_PROJECTION).get_weights()[0], saved["query_kernel"]
    )
    np.testing.assert_array_equal(
        model.get_layer(PRODUCT_PROJECTION).get_weights()[1], saved["product_bias"]
    )
    # Another projection width: the encoder is still used, the projections start at random.
    wide = TrainConfig(encoder_preset=str(preset), ranker=architecture("mlp_mtl"))
    model, *_ = build_model(
        wide, tft.TFTransformOutput(dirs["tft"]), split_files(dirs["tx"], "train")
    )
    assert model.get_layer(QUERY_PROJECTION).get_weights()[0].shape[1] == 256


def test_switched_off_step_writes_only_the_marker(tmp_path):
    from components.pretrain.component import pretrain

    encoder = dsl.Model(uri=str(tmp_path / "encoder"))
    pretrain.python_func(
        transform_graph=dsl.Model(uri=str(tmp_path / "missing")),
        transformed_examples=dsl.Dataset(uri=str(tmp_path / "missing")),
        encoder=encoder,
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        enabled=False,
    )
    assert os.listdir(encoder.path) == [layout.PRETRAIN_DISABLED_FILE]
    assert encoder.metadata["enabled"] is False
