"""The encoder's prior (model/encoder_prior.py): its layers by hand, and an untrained ranker
that ranks every query's products exactly as the text encoder's own cosine does."""

import keras
import keras_hub
import numpy as np
import pytest
from scipy.stats import spearmanr

from contract import schema as S
from model.architectures import ARCHITECTURES
from model.encoder import TextEncoder
from model.encoder_prior import EncoderPrior, PriorSkip, UnitVector
from model.ranker import build_ranker, cached_ranker

SIZES = {c: 4 for c in S.CATEGORICAL_COLUMNS}
QUERIES, CANDIDATES = 6, 12


def test_unit_vector_appends_the_normalised_raw_vector():
    raw = np.array([[3.0, 4.0], [0.0, 0.0]], "float32")
    out = np.asarray(UnitVector()([np.ones((2, 2), "float32"), raw]))
    np.testing.assert_allclose(out, [[1, 1, 0.6, 0.8], [1, 1, 0, 0]], rtol=1e-6)


def test_encoder_prior_splits_and_takes_the_cosine_of_the_unit_parts():
    phi = np.array([[1.0, 2.0, 0.6, 0.8]], "float32")
    psi = np.array([[3.0, 4.0, 0.0, 1.0]], "float32")
    projected_q, projected_p, prior = (np.asarray(t) for t in EncoderPrior(2)([phi, psi]))
    np.testing.assert_allclose(projected_q, [[1.0, 2.0]])
    np.testing.assert_allclose(projected_p, [[3.0, 4.0]])
    np.testing.assert_allclose(prior, [[0.8]], rtol=1e-6)  # 0.6 * 0 + 0.8 * 1


def test_prior_skip_adds_the_scaled_prior_to_each_logit():
    layer = PriorSkip(2, initial_scale=2.0)
    logits = [np.array([[0.5]], "float32"), np.array([[-1.0]], "float32")]
    a, b = (float(np.asarray(t)[0, 0]) for t in layer([*logits, np.array([[0.25]], "float32")]))
    assert a == pytest.approx(1 / (1 + np.exp(-(0.5 + 2.0 * 0.25))), rel=1e-6)
    assert b == pytest.approx(1 / (1 + np.exp(-(-1.0 + 2.0 * 0.25))), rel=1e-6)
    restored = PriorSkip.from_config(layer.get_config())
    assert restored.tasks == 2 and restored.initial_scale == 2.0


def _ranker(config, fine_tune_layers=0):
    keras.utils.set_random_seed(11)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=12,
    )  # fmt: skip
    config = config.replace(
        projection_dim=8, num_shared_experts=2, expert_units=(8,), tower_units=(4,),
        fine_tune_layers=fine_tune_layers,
    )  # fmt: skip
    encoder = TextEncoder(backbone, fine_tune_layers=fine_tune_layers)
    return build_ranker(config, encoder, 3, SIZES, 6, 12)


def _requests(rng):
    """QUERIES queries with CANDIDATES products each, random features per pair."""
    n = QUERIES * CANDIDATES
    return {
        "query_token_ids": np.repeat(rng.integers(5, 40, (QUERIES, 6)), CANDIDATES, axis=0),
        "query_padding_mask": np.ones((n, 6), "int32"),
        "product_token_ids": rng.integers(5, 40, (n, 12)).astype("int32"),
        "product_padding_mask": np.ones((n, 12), "int32"),
        S.WIDE: rng.normal(size=(n, 3)).astype("float32"),
        **{S.vocab_id_name(c): rng.integers(0, 4, n).astype("int32") for c in S.CATEGORICAL_COLUMNS},
        S.MARKET_ID: np.zeros(n, "int32"),
    }  # fmt: skip


def _zero_shot(model, x):
    """The untrained text encoder's cosine of each pair's query and product."""
    encode = model.text_encoder
    q = np.asarray(
        encode({"token_ids": x["query_token_ids"], "padding_mask": x["query_padding_mask"]})
    )
    p = np.asarray(encode({"token_ids": x["product_token_ids"], "padding_mask": x["product_padding_mask"]}))  # fmt: skip
    return np.sum(q * p, axis=1) / (np.linalg.norm(q, axis=1) * np.linalg.norm(p, axis=1))


@pytest.mark.parametrize("name", ["mlpr", "mlp_mtl", "dcn_v2"])
def test_an_untrained_ranker_ranks_each_query_as_the_encoders_cosine(name):
    model = _ranker(ARCHITECTURES[name])
    x = _requests(np.random.default_rng(0))
    cosine = _zero_shot(model, x)
    out = model.predict(x, verbose=0, batch_size=len(cosine))
    for task in S.DEFAULT_TASKS:
        scores = np.asarray(out[task]).reshape(-1)
        for q in range(QUERIES):
            rows = slice(q * CANDIDATES, (q + 1) * CANDIDATES)
            assert np.ptp(cosine[rows]) > 1e-3  # the comparison can fail
            rho = spearmanr(scores[rows], cosine[rows]).statistic
            assert rho == pytest.approx(1.0, abs=1e-9), (task, q, rho)


def test_without_the_prior_an_untrained_ranker_does_not_follow_the_cosine():
    model = _ranker(ARCHITECTURES["mlpr"].replace(encoder_prior=False))
    x = _requests(np.random.default_rng(0))
    cosine = _zero_shot(model, x)
    scores = np.asarray(model.predict(x, verbose=0)["click"]).reshape(-1)
    rhos = [
        spearmanr(scores[q * CANDIDATES : (q + 1) * CANDIDATES], cosine[q * CANDIDATES : (q + 1) * CANDIDATES]).statistic
        for q in range(QUERIES)
    ]  # fmt: skip
    assert np.mean(rhos) < 0.9


def test_the_cached_ranker_carries_the_prior_too():
    model = _ranker(ARCHITECTURES["mlpr"])
    cached = cached_ranker(model)
    x = _requests(np.random.default_rng(1))
    encode = model.text_encoder
    vectors = {
        "query_vector": np.asarray(encode({"token_ids": x["query_token_ids"], "padding_mask": x["query_padding_mask"]})),
        "product_vector": np.asarray(encode({"token_ids": x["product_token_ids"], "padding_mask": x["product_padding_mask"]})),
    }  # fmt: skip
    features = {k: v for k, v in x.items() if not k.endswith(("token_ids", "padding_mask"))}
    full, fast = model(x), cached({**vectors, **features})
    for task in S.DEFAULT_TASKS:
        np.testing.assert_allclose(np.asarray(fast[task]), np.asarray(full[task]), atol=1e-6)
    # phi(q) carries the projection, then the unit encoder vector.
    phi = np.asarray(model.embed("query", vectors["query_vector"]))
    assert phi.shape[1] == 8 + 16
    np.testing.assert_allclose(np.linalg.norm(phi[:, 8:], axis=1), 1.0, rtol=1e-5)


def test_the_heads_start_at_the_tasks_rates_for_a_pair_of_mean_cosine():
    from model.encoder_prior import start_heads_at_rates
    from model.scorer import PRODUCT_EMBEDDING, QUERY_EMBEDDING

    model = _ranker(ARCHITECTURES["mlpr"])
    rates = {"click": 0.2, "atc": 0.05, "purchase": 0.01}
    biases = start_heads_at_rates(model.scorer, rates, S.DEFAULT_TASKS, 0.3, True)
    # Under probability transfer each head predicts its rate given the task before it.
    for task, conditional in (("click", 0.2), ("atc", 0.25), ("purchase", 0.2)):
        assert biases[task] == pytest.approx(np.log(conditional / (1 - conditional)) - 1.0 * 0.3)
    # A pair whose unit encoder vectors have cosine 0.3 is predicted at the rates.
    rng = np.random.default_rng(0)
    unit_q = np.zeros(16, "float32")
    unit_q[0] = 1.0
    unit_p = np.zeros(16, "float32")
    unit_p[:2] = (0.3, np.sqrt(1 - 0.09))
    n = 4
    x = {
        QUERY_EMBEDDING: np.concatenate([rng.normal(size=(n, 8)), np.tile(unit_q, (n, 1))], axis=1),
        PRODUCT_EMBEDDING: np.concatenate([rng.normal(size=(n, 8)), np.tile(unit_p, (n, 1))], axis=1),
        S.WIDE: rng.normal(size=(n, 3)).astype("float32"),
        **{S.vocab_id_name(c): rng.integers(0, 4, n).astype("int32") for c in S.CATEGORICAL_COLUMNS},
        S.MARKET_ID: np.zeros(n, "int32"),
    }  # fmt: skip
    out = model.scorer(
        {k: np.asarray(v, "float32" if v.dtype.kind == "f" else "int32") for k, v in x.items()}
    )
    for task, rate in rates.items():
        np.testing.assert_allclose(np.asarray(out[task]).reshape(-1), rate, rtol=1e-4)
