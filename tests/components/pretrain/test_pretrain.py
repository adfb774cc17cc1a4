"""The pretrain step: the negative sampler, the training lists, and the preset it writes
(saved, loaded back and copied into the ranker)."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from kfp import dsl

from components.pretrain.pretrain import (
    INFO_FILE,
    EncoderInputs,
    EngagementData,
    PretrainConfig,
    TwoTower,
    batch_mask,
    gains_of,
    load_projections,
    read_engagement,
    run_pretrain,
    training_lists,
)
from components.pretrain.sampler import NegativeSampler
from components.pretrain.step import pretrain_step
from contract import layout
from contract import schema as S


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


def test_sampler_takes_the_hard_negatives_first_and_fills_with_random_ones():
    sampler = NegativeSampler(num_products=1000, ratio=3, seed=0)
    positives = {0, 1}
    # Shown-but-not-engaged products 5, 6, 7 (and a positive, which never comes back).
    negatives = sampler.sample(positives, hard=[5, 6, 7, 1])
    assert len(negatives) == 6
    assert sorted(negatives[:3].tolist()) == [5, 6, 7]
    assert not set(negatives.tolist()) & positives
    # More hard negatives than the ratio allows: only `count`, chosen at random.
    chosen = [set(sampler.sample({0}, count=2, hard=range(10, 20)).tolist()) for _ in range(30)]
    assert all(len(c) == 2 and c <= set(range(10, 20)) for c in chosen)
    assert len(set().union(*chosen)) > 5


def _lists(data, config, seed=0):
    sampler = NegativeSampler(len(data.product_ids), config.ratio, seed=1)
    lists = training_lists(data, config, sampler, np.random.default_rng(seed))
    return {q: (products, target, mask) for q, products, target, mask in lists}


def test_training_lists_rank_engaged_products_by_grade_above_negatives():
    data = EngagementData(
        product_ids=[f"p{i}" for i in range(40)],
        product_texts=[f"text {i}" for i in range(40)],
        # gains 2^grade - 1: click 1, add-to-cart 3, purchase 7
        engaged={"boots": {0: 1.0, 1: 7.0, 2: 3.0}, "lamp": {5: 1.0}},
        shown={"boots": [30, 31], "lamp": [32]},
    )
    config = PretrainConfig(max_positives=2, ratio=5)
    by_query = _lists(data, config)
    assert sorted(by_query) == ["boots", "lamp"]
    products, target, mask = by_query["boots"]
    assert len(products) == 2 * (1 + 5)
    # The two best grades (purchase, add-to-cart), weighted 7 and 3.
    assert products[:2].tolist() == [1, 2]
    np.testing.assert_allclose(target[:2], [0.7, 0.3])
    assert mask.sum() == 12 and target[2:].sum() == 0
    assert not set(products[2:].tolist()) & {0, 1, 2}
    products, target, mask = by_query["lamp"]
    assert mask.sum() == 6 and target[0] == 1.0 and products[0] == 5  # padded after 6

    # With hard negatives the query's shown-but-not-engaged products come right after.
    hard = _lists(data, dataclasses.replace(config, hard_negatives=True))
    assert sorted(hard["boots"][0][2:4].tolist()) == [30, 31]
    assert not set(hard["boots"][0][4:12].tolist()) & {0, 1, 2}
    assert hard["lamp"][0][1] == 32


def test_in_batch_negatives_never_include_a_product_the_query_was_engaged_with():
    # Two lists of width 3: boots (engaged 1, negatives 4 and 2; 2 is lamp's positive) and
    # lamp (engaged 2, one negative 1, one padded slot).
    lists = [
        ("boots", np.array([1, 4, 2]), np.array([1.0, 0, 0]), np.array([1.0, 1, 1])),
        ("lamp", np.array([2, 1, 0]), np.array([1.0, 0, 0]), np.array([1.0, 1, 0])),
    ]
    engaged = [{1: 1.0}, {2: 3.0}]
    mask = batch_mask(lists, engaged, in_batch_negatives=True)
    # boots: its own list, and lamp's products except boots' own product 1 and the pad.
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 1, 0, 0])
    # lamp: boots' 1 and 4 are negatives, boots' 2 is lamp's own engaged product.
    np.testing.assert_array_equal(mask[1], [1, 1, 0, 1, 1, 0])
    alone = batch_mask(lists, engaged, in_batch_negatives=False)
    np.testing.assert_array_equal(alone, [[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 0]])


def test_fine_tune_layers_is_checked():
    with pytest.raises(ValueError, match="fine_tune_layers must be 'all' or a whole number"):
        PretrainConfig(fine_tune_layers="top")
    assert PretrainConfig(encoder_preset="./minilm", fine_tune_layers="1").fine_tune_layers == 1
    with pytest.raises(ValueError, match="encoder_learning_rate must be in"):
        PretrainConfig(learning_rate=1e-3, encoder_learning_rate=1e-2)
    with pytest.raises(
        ValueError, match="'tiny' encoder is random .* needs fine_tune_layers='all'"
    ):
        PretrainConfig(encoder_preset="tiny", fine_tune_layers=1)


@pytest.mark.parametrize("layers", [0, 1])
def test_cached_inputs_give_the_encoders_own_vectors(tmp_path, layers):
    """The cached path (the frozen part computed once, padded per batch) embeds every text as
    the whole encoder does from its tokens."""
    from model.encoder import TextEncoder
    from model.presets import tiny_encoder
    from model.text_preprocessor import TextPreprocessor

    texts = [b"red boots", b"oak lamp with a long shade and a brass base", b"", b"boots"]
    backbone, tokenizer = tiny_encoder([t.decode() for t in texts] * 5, seed=3)
    preprocessor = TextPreprocessor(tokenizer, 8, 12)
    model = TwoTower(TextEncoder(backbone, fine_tune_layers=layers), 16)
    cached = EncoderInputs(model.encoder, preprocessor, str(tmp_path), {"product": texts})
    assert cached.cached and cached.cache_stats["texts_encoded"] == len(texts)
    tokens = preprocessor(tf.zeros([0], tf.string), tf.constant(texts))
    whole = model.embed_products(
        {"token_ids": tokens["product_token_ids"], "padding_mask": tokens["product_padding_mask"]}
    )
    order = [3, 1, 0, 2]  # any order and any batch: rows are padded to the batch's longest
    looked_up = model.embed_products(cached.batch("product", [texts[i] for i in order]))
    np.testing.assert_allclose(looked_up.numpy(), whole.numpy()[order], atol=1e-5)
    assert ("hidden" in cached.batch("product", texts[:1])) == (layers > 0)
    # Untrained, both towers project alike: a short text scores its own copy at cosine 1.
    short = [0, 2, 3]
    query_side = EncoderInputs(model.encoder, preprocessor, str(tmp_path), {"query": texts})
    queries = model.embed_queries(query_side.batch("query", [texts[i] for i in short]))
    same = np.sum(queries.numpy() * whole.numpy()[short], axis=1)
    np.testing.assert_allclose(same, 1.0, atol=1e-5)


def test_partial_pretraining_changes_only_the_top_blocks(pretrained, tmp_path):
    """fine_tune_layers=1: the top block and the projections learn; the embeddings and the
    blocks below are the preset's own, to the bit."""
    from model.presets import load_encoder

    dirs, preset, _, _ = pretrained
    config = PretrainConfig(
        encoder_preset=str(preset),  # a pretrained preset: the blocks at a tenth of the rate
        epochs=1,
        queries_per_batch=4,
        ratio=3,
        projection_dim=16,
        fine_tune_layers=1,
    )
    info = run_pretrain(dirs["tft"], dirs["tx"], str(tmp_path / "top"), config)
    assert info["text_cache"]["texts_encoded"] > 240  # the catalog and the queries, once
    before, _ = load_encoder(str(preset))
    after, _ = load_encoder(str(tmp_path / "top"))
    top = {w.path for w in after.transformer_layers[-1].weights}
    changed = set()
    for old, new in zip(before.weights, after.weights, strict=True):
        if not np.array_equal(np.asarray(old), np.asarray(new)):
            changed.add(new.path)
    assert changed and changed <= top
    projections = load_projections(str(tmp_path / "top"))
    assert not np.array_equal(
        projections["query_kernel"], load_projections(str(preset))["query_kernel"]
    )
    assert info["eval_after"]["queries"] == info["eval_before"]["queries"] > 0


def test_gains_come_from_the_funnel_depth():
    labels = {
        "click": tf.constant([[1], [1], [1], [0]]),
        "atc": tf.constant([[1], [1], [0], [0]]),
        "purchase": tf.constant([[1], [0], [0], [0]]),
    }
    np.testing.assert_allclose(gains_of(labels, S.DEFAULT_TASKS), [7, 3, 1, 0])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from conftest import synthetic_splits, transformed_dataset

    root = tmp_path_factory.mktemp("pretrain")
    rows = synthetic_splits(160, 60, 20)
    dirs = transformed_dataset(root, rows, S.DEMO_SCHEMA)
    metadata, logged = {}, {}

    class Metrics:  # what the step needs of a kfp Metrics artifact
        def log_metric(self, name, value):
            logged[name] = value

    info = pretrain_step(
        dirs["tft"],
        dirs["tx"],
        str(root / "preset"),
        metadata,
        Metrics(),
        enabled=True,
        epochs=2,
        queries_per_batch=4,
        ratio=3,
        projection_dim=16,
        hard_negatives=True,
    )
    assert metadata["enabled"] is True and metadata["fine_tune_layers"] == "all"
    assert logged["eval_recall@10_after"] == round(info["eval_after"]["recall@10"], 5)
    assert {n.rsplit("_", 1)[1] for n in logged} == {"before", "after"}
    return dirs, root / "preset", info, rows


def test_engagement_read_back_from_the_transformed_split(pretrained):
    import tensorflow_transform as tft

    dirs, _, _, rows = pretrained
    data = read_engagement(dirs["tx"], tft.TFTransformOutput(dirs["tft"]), "train", S.DEFAULT_TASKS)
    assert len(data.product_ids) == 240  # the catalog: every product of every split
    engaged, shown = {}, {}
    for r in rows["train"]:
        grade = sum(int(r[c] > 0) for c in (S.CLICKS, S.ADD_TO_CART, S.PURCHASES))
        gain = 2**grade - 1
        if r[S.CLICKS] > 0:
            engaged.setdefault(r[S.QUERY], {})[r[S.PRODUCT_ID]] = gain
        else:
            shown.setdefault(r[S.QUERY], set()).add(r[S.PRODUCT_ID])
    ids = data.product_ids
    assert {q: {ids[i]: g for i, g in e.items()} for q, e in data.engaged.items()} == engaged
    assert {q: {ids[i] for i in s} for q, s in data.shown.items()} == shown
    assert {g for e in engaged.values() for g in e.values()} == {1, 3, 7}


def test_preset_round_trip(pretrained):
    import keras_hub

    from model.encoder import TextEncoder
    from model.presets import load_encoder
    from model.text_preprocessor import TextPreprocessor

    _, preset, info, _ = pretrained
    saved = json.loads((preset / INFO_FILE).read_text())
    assert saved["config"]["ratio"] == 3 and saved["config"]["hard_negatives"] is True
    assert len(saved["loss_by_epoch"]) == 2
    for when in ("eval_before", "eval_after"):
        assert 0.0 <= saved[when]["recall@10"] <= 1.0 and saved[when]["queries"] > 0
        assert 0.0 < saved[when]["shown_ndcg@5"] <= 1.0
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
    from components.train.training import build_model
    from model.architectures import architecture

    dirs, preset, _, _ = pretrained
    config = TrainConfig(
        encoder_preset=str(preset), ranker=architecture("mlp_mtl").replace(projection_dim=16)
    )
    model, *_ = build_model(
        config, tft.TFTransformOutput(dirs["tft"]), split_files(dirs["tx"], "train")
    )
    saved = load_projections(str(preset))
    np.testing.assert_array_equal(model.query_projection.get_weights()[0], saved["query_kernel"])
    np.testing.assert_array_equal(model.product_projection.get_weights()[1], saved["product_bias"])
    # Another projection width: the encoder is still used, the projections start at random.
    wide = TrainConfig(encoder_preset=str(preset), ranker=architecture("mlp_mtl"))
    model, *_ = build_model(
        wide, tft.TFTransformOutput(dirs["tft"]), split_files(dirs["tx"], "train")
    )
    assert model.query_projection.get_weights()[0].shape[1] == 256


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
