"""The split scorer (serving/first_layer.py) gives the trained scorer's probabilities, for
every architecture: query terms once per query, product terms once per product, pair terms
per candidate."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contract import schema as S
from model.architectures import ARCHITECTURES
from model.scorer import (
    FEATURES,
    PRODUCT_EMBEDDING,
    QUERY_EMBEDDING,
    build_scorer,
    categorical_input_names,
    feature_segments,
    folded_scorer,
)
from serving.first_layer import SplitScorer

DIM, WIDE, VOCABULARY = 8, 6, 7
ENCODER = 5  # the unit encoder vector phi(q) and psi(i) carry for the prior
MARKETS = 3
SIZES = {**{c: VOCABULARY for c in S.CATEGORICAL_COLUMNS}, S.MARKET: MARKETS}
SMALL = dict(
    projection_dim=DIM,
    expert_units=(16, 8),
    tower_units=(4,),
    num_shared_experts=2,
    categorical_embedding_dim=3,
)


def _scorer(config):
    scorer = build_scorer(config, WIDE, SIZES, encoder_dim=ENCODER)
    rng = np.random.default_rng(0)
    for v in scorer.weights:  # kernels as drawn, x2; random biases and batch-norm statistics
        if "cross_kernel" in v.path:
            # Crosses multiply the features by themselves: drawn kernels on features of scale
            # 3 give values where float32 keeps no 1e-5 of the probabilities.
            v.assign(0.05 * np.asarray(v))
            continue
        if "kernel" in v.path:
            drawn = np.asarray(v)  # the heads' start at zero under the prior: draw them
            v.assign(2 * drawn if drawn.any() else rng.normal(scale=0.3, size=v.shape))
            continue
        value = rng.normal(scale=0.3, size=v.shape)
        v.assign(np.abs(value) + 0.5 if "variance" in v.path else value)
    return scorer


def _embedding(n, rng):
    projected = rng.normal(scale=3, size=(n, DIM))
    unit = rng.normal(size=(n, ENCODER))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    return np.concatenate([projected, unit], axis=1).astype("float32")


def _inputs(n, rng, width=DIM + ENCODER):
    return {
        QUERY_EMBEDDING: _embedding(n, rng)[:, :width],
        PRODUCT_EMBEDDING: _embedding(n, rng)[:, :width],
        S.WIDE: rng.normal(size=(n, WIDE)).astype("float32"),
        **{c: rng.integers(0, VOCABULARY, n).astype("int32") for c in categorical_input_names()},
        S.MARKET_ID: rng.integers(0, MARKETS, n).astype("int32"),
    }


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize(
    "interactions", [("cosine", "hadamard", "concat"), ("cosine",), ("hadamard",)]
)
def test_split_scorer_equals_the_scorer(name, interactions):
    _check_split(ARCHITECTURES[name].replace(**SMALL, interactions=interactions))


@pytest.mark.parametrize("name", ["mlpr", "mlp_mtl"])
def test_split_scorer_without_the_encoder_prior_equals_the_scorer(name):
    _check_split(ARCHITECTURES[name].replace(**SMALL, encoder_prior=False))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_split_scorer_with_region_masks_equals_the_scorer(name):
    config = ARCHITECTURES[name].replace(**SMALL, region_mask=True)
    scorer = _check_split(config)
    masks = [layer for layer in scorer.layers if layer.name.endswith("_mask")]
    assert len(masks) == 2 * len(S.DEFAULT_TASKS)
    # The markets' masks differ, so the market changes the scores (of some task: the drawn
    # weights saturate a head of some architectures at exactly 0 or 1).
    x = _inputs(20, np.random.default_rng(4))
    other = {**x, S.MARKET_ID: (x[S.MARKET_ID] + 1) % MARKETS}
    here, there = scorer(x), scorer(other)
    moved = max(np.abs(np.asarray(here[t]) - np.asarray(there[t])).max() for t in S.DEFAULT_TASKS)
    assert moved > 1e-3


def _check_split(config):
    if config.num_specific_experts and config.specific_experts:
        config = config.replace(num_specific_experts=2)
    scorer = _scorer(config)
    folded = folded_scorer(scorer, config, WIDE, SIZES)
    split = SplitScorer(folded)
    x = _inputs(50, np.random.default_rng(1), DIM + (ENCODER if config.encoder_prior else 0))
    expected = scorer(x, training=False)
    # The query terms of one query, as serving computes them once and gathers.
    query_terms = split.query_terms(tf.constant(x[QUERY_EMBEDDING]))
    product_terms = split.product_terms(
        tf.constant(x[PRODUCT_EMBEDDING]), [x[c] for c in categorical_input_names()]
    )
    got = split.score(
        x[QUERY_EMBEDDING],
        x[PRODUCT_EMBEDDING],
        query_terms,
        product_terms,
        x[S.WIDE],
        x[S.MARKET_ID],
    )
    # The candidates' scores differ: the comparison can fail.
    assert max(np.ptp(np.asarray(expected[t])) for t in S.DEFAULT_TASKS) > 1e-3
    unsplit = folded(x, training=False)
    for task in S.DEFAULT_TASKS:
        np.testing.assert_allclose(
            np.asarray(got[task]), np.asarray(expected[task]), rtol=0, atol=1e-5
        )
        np.testing.assert_allclose(
            np.asarray(unsplit[task]), np.asarray(expected[task]), rtol=0, atol=1e-5
        )
    return scorer


def test_the_parts_of_the_features_cover_them_in_order():
    scorer = _scorer(ARCHITECTURES["mlpr"].replace(**SMALL))
    segments = feature_segments(scorer)
    assert [n for n, _ in segments] == [
        "cosine",
        "hadamard",
        "query",
        "product",
        S.WIDE,
        *S.CATEGORICAL_COLUMNS,
    ]
    assert sum(w for _, w in segments) == scorer.get_layer(FEATURES).output.shape[-1]
    # MMoE reads the features: its experts' first block and gates are the split's width.
    split = SplitScorer(scorer)
    assert [layer.name for layer in split.consumers] == ["multi_gate_experts"]
    assert split.width == 2 * 16 + 4 * 2  # 2 experts x 16 units, 3 task gates + 1 shared


def test_a_layer_reading_the_features_and_more_is_refused():
    features = keras.Input((5,), name="f")
    other = keras.Input((5,), name="o")
    joined = keras.layers.Add()([features, other])
    from serving.first_layer import _reads

    layer = keras.Model([features, other], joined).get_layer("add")
    with pytest.raises(ValueError, match="other inputs"):
        _reads(layer, features)


def test_the_split_scorer_in_bfloat16_stays_near_float32_and_returns_float32():
    config = ARCHITECTURES["mlpr"].replace(**SMALL)
    scorer = _scorer(config)
    split = SplitScorer(folded_scorer(scorer, config, WIDE, SIZES, "mixed_bfloat16"))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    computes = {layer.name: layer.compute_dtype for layer in split.rest.layers}
    assert "bfloat16" in computes.values()
    assert {computes[f"{t}_head"] for t in S.DEFAULT_TASKS} == {"float32"}
    x = _inputs(50, np.random.default_rng(1))
    terms = (
        split.query_terms(tf.constant(x[QUERY_EMBEDDING])),
        split.product_terms(
            tf.constant(x[PRODUCT_EMBEDDING]), [x[c] for c in categorical_input_names()]
        ),
    )
    got = split.score(x[QUERY_EMBEDDING], x[PRODUCT_EMBEDDING], *terms, x[S.WIDE])
    expected = scorer(x, training=False)
    for task in S.DEFAULT_TASKS:
        assert got[task].dtype == tf.float32
        difference = np.abs(np.asarray(got[task]) - np.asarray(expected[task]))
        # bfloat16 keeps 8 bits of mantissa: close, but not float32's 1e-5.
        assert 1e-6 < difference.max() < 0.05
