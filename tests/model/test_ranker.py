import keras
import keras_hub
import numpy as np
import pytest

from contract import schema as S
from model.architectures import ARCHITECTURES, architecture
from model.config import RankerConfig
from model.encoder import TextEncoder
from model.multitask_loss import loss_layer
from model.ranker import build_ranker, cached_ranker, model_input_names

VOCAB_SIZES = {c: 4 for c in S.CATEGORICAL_COLUMNS}


def _ranker(**overrides):
    keras.utils.set_random_seed(3)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )  # fmt: skip
    return build_ranker(_small_config(**overrides), TextEncoder(backbone), 3, VOCAB_SIZES, 4, 8)


def _small_config(**overrides) -> RankerConfig:
    return RankerConfig(
        projection_dim=8, num_shared_experts=2, expert_units=(8,), tower_units=(4,), **overrides
    )


def _inputs(n=5):
    rng = np.random.default_rng(0)
    x = {
        "query_token_ids": rng.integers(5, 20, (n, 4)).astype("int32"),
        "query_padding_mask": np.ones((n, 4), "int32"),
        "product_token_ids": rng.integers(5, 20, (n, 8)).astype("int32"),
        "product_padding_mask": np.ones((n, 8), "int32"),
        S.WIDE: rng.normal(size=(n, 3)).astype("float32"),
    }
    for c in S.CATEGORICAL_COLUMNS:
        x[S.vocab_id_name(c)] = rng.integers(0, 4, (n,)).astype("int32")
    x[S.MARKET_ID] = np.zeros(n, "int32")
    return x


def test_outputs_respect_the_funnel_with_probability_transfer():
    out = _ranker().predict(_inputs(), verbose=0)
    click, atc, purchase = (out[t].reshape(-1) for t in S.DEFAULT_TASKS)
    assert np.all((click > 0) & (click < 1))
    assert np.all(click >= atc) and np.all(atc >= purchase)
    assert set(_ranker().input) == set(model_input_names())


def test_keras_file_round_trip(tmp_path):
    model = _ranker()
    x = _inputs()
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    a, b = model.predict(x, verbose=0), restored.predict(x, verbose=0)
    for t in S.DEFAULT_TASKS:
        np.testing.assert_allclose(a[t], b[t], rtol=1e-5)


def test_one_fit_step_reduces_loss_on_a_fixed_batch():
    model = _ranker(dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(0.01))  # the ranker brings its own loss
    x = _inputs(16)
    y = {t: (np.arange(16) % 2).reshape(-1, 1).astype("float32") for t in S.DEFAULT_TASKS}
    first = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["loss"] < first


def test_missing_vocabulary_is_a_clear_error():
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )  # fmt: skip
    with pytest.raises(ValueError, match="brand"):
        build_ranker(RankerConfig(), TextEncoder(backbone), 3, {"product_type": 2}, 4, 8)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_builds_trains_and_round_trips(name, tmp_path):
    """Each named model: the stages it declares are in the graph, one fit step runs, the
    probability outputs stay in (0, 1), and the .keras file restores the same predictions."""
    config = architecture(name).replace(
        projection_dim=8, expert_units=(8,), shared_bottom_units=(), tower_units=(4,), dropout=0.0
    )
    if architecture(name).shared_bottom_units:
        config = config.replace(shared_bottom_units=(8,))
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )  # fmt: skip
    model = build_ranker(config, TextEncoder(backbone), 3, VOCAB_SIZES, 4, 8)
    assert {layer.name for layer in model.layers} >= {"query_encoder", "product_encoder", "scorer"}
    names = {layer.name for layer in model.scorer.layers}
    assert ("multi_gate_experts" in names) == config.multi_gate_experts
    assert ("specific_experts" in names) == config.specific_experts
    assert ("probability_transfer" in names) == config.probability_transfer
    assert ("atc_attention" in names) == config.attention_units
    assert ("shared_bottom" in names) == bool(config.shared_bottom_units)
    assert ("click_network" in names) == config.separate_task_networks
    log_sigma = loss_layer(model).log_sigma
    assert log_sigma.trainable == (config.loss_balancing == "uncertainty")

    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x = _inputs(8)
    y = {t: (np.arange(8) % 2).reshape(-1, 1).astype("float32") for t in S.DEFAULT_TASKS}
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    if config.loss_balancing == "uncertainty":
        assert np.any(np.asarray(log_sigma) != 0.0)  # sigma is learned
    preds = model.predict(x, verbose=0)
    for t in S.DEFAULT_TASKS:
        assert np.all((preds[t] > 0) & (preds[t] < 1))
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    again = restored.predict(x, verbose=0)
    for t in S.DEFAULT_TASKS:
        np.testing.assert_allclose(again[t], preds[t], rtol=1e-5)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match="mlp_mtl"):
        architecture("mlpr_v2")


def _two_layer_ranker(fine_tune_layers):
    keras.utils.set_random_seed(5)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=20, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )  # fmt: skip
    config = _small_config(dropout=0.0, fine_tune_layers=fine_tune_layers)
    encoder = TextEncoder(backbone, fine_tune_layers=fine_tune_layers)
    return build_ranker(config, encoder, 3, VOCAB_SIZES, 4, 8)


def _padded_inputs(n=6):
    """Token inputs with real padding (texts shorter than the packed length)."""
    x = _inputs(n)
    x["query_padding_mask"] = (np.arange(4)[None, :] < np.arange(n)[:, None] % 3 + 2).astype(
        "int32"
    )
    x["product_padding_mask"] = (np.arange(8)[None, :] < np.arange(n)[:, None] % 5 + 3).astype(
        "int32"
    )
    return {k: keras.ops.convert_to_tensor(v) for k, v in x.items()}


def test_the_ranker_is_its_parts_composed():
    model = _two_layer_ranker("all")
    x = _padded_inputs()
    whole = model(x)
    phi = model.query_encoder({k: x[k] for k in ("query_token_ids", "query_padding_mask")})
    psi = model.product_encoder({k: x[k] for k in ("product_token_ids", "product_padding_mask")})
    parts = model.scorer(
        {"query_embedding": phi, "product_embedding": psi, **{k: x[k] for k in _features()}}
    )
    for t in S.DEFAULT_TASKS:
        np.testing.assert_array_equal(np.asarray(whole[t]), np.asarray(parts[t]))
    assert model.text_encoder is model.product_encoder.get_layer("text_encoder")


def _features():
    return [S.WIDE, *(S.vocab_id_name(c) for c in S.CATEGORICAL_COLUMNS), S.MARKET_ID]


def _cached_inputs(model, x):
    encoder = model.text_encoder
    out = {k: x[k] for k in _features()}
    for side in ("query", "product"):
        ids, mask = x[f"{side}_token_ids"], x[f"{side}_padding_mask"]
        if encoder.trained_blocks == 0:
            out[f"{side}_vector"] = encoder({"token_ids": ids, "padding_mask": mask})
        else:
            out[f"{side}_hidden"] = encoder.lower_model()(encoder.lower_inputs(ids, mask))
            out[f"{side}_mask"] = mask
    return out


@pytest.mark.parametrize("fine_tune_layers", [0, 1])
def test_cached_ranker_scores_as_the_ranker_and_trains_its_weights(fine_tune_layers):
    """The ranker above the frozen part of its encoder: the same scores from the frozen
    part's outputs, and fitting it moves the ranker's own weights, the trained blocks
    included, and no frozen weight."""
    model = _two_layer_ranker(fine_tune_layers)
    x = _padded_inputs()
    cached = cached_ranker(model)
    inputs = _cached_inputs(model, x)
    before = model(x)
    got = cached(inputs)
    for t in S.DEFAULT_TASKS:
        np.testing.assert_allclose(np.asarray(got[t]), np.asarray(before[t]), atol=1e-6)
    blocks = model.text_encoder.backbone.transformer_layers
    frozen = [np.asarray(w).copy() for w in blocks[0].weights]
    top = [np.asarray(w).copy() for w in blocks[1].weights]
    head = np.asarray(model.query_projection.kernel).copy()
    cached.compile(optimizer=keras.optimizers.Adam(0.05))
    y = {t: (np.arange(6) % 2).reshape(-1, 1).astype("float32") for t in S.DEFAULT_TASKS}
    cached.fit(inputs, y, epochs=2, batch_size=6, verbose=0)
    assert not np.allclose(np.asarray(model.query_projection.kernel), head)
    for w, old in zip(blocks[0].weights, frozen, strict=True):
        np.testing.assert_array_equal(np.asarray(w), old)
    moved = any(
        not np.allclose(np.asarray(w), o) for w, o in zip(blocks[1].weights, top, strict=True)
    )
    assert moved == (fine_tune_layers == 1)
    after, again = model(x), cached(_cached_inputs(model, x))
    for t in S.DEFAULT_TASKS:
        np.testing.assert_allclose(np.asarray(again[t]), np.asarray(after[t]), atol=1e-6)


def test_a_fully_fine_tuned_encoder_has_nothing_to_cache():
    with pytest.raises(ValueError, match="no frozen part"):
        cached_ranker(_two_layer_ranker("all"))


def test_tied_projection_init_starts_the_cosine_at_the_encoders_own():
    """phi and psi start from one random projection (so cosine(phi, psi) starts as the
    encoder's own similarity, up to the projection's distortion); untied, from two."""
    model = _two_layer_ranker("all")
    assert np.array_equal(
        np.asarray(model.query_projection.kernel), np.asarray(model.product_projection.kernel)
    )
    untied = build_ranker(
        model.ranker_config.replace(tied_projection_init=False),
        TextEncoder(model.text_encoder.backbone),
        3,
        VOCAB_SIZES,
        4,
        8,
    )
    assert not np.array_equal(
        np.asarray(untied.query_projection.kernel), np.asarray(untied.product_projection.kernel)
    )


def test_the_relevance_task_is_a_tower_outside_the_funnel(tmp_path):
    model = _ranker(relevance_task=True, position_buckets=3, calibration_weight=1.0)
    x = _inputs(8)
    out = model.predict(x, verbose=0)
    assert sorted(out) == sorted([*S.DEFAULT_TASKS, S.RELEVANCE_TASK])
    layer = loss_layer(model)
    assert layer.tasks == (*S.DEFAULT_TASKS, S.RELEVANCE_TASK) and layer.funnel_size == 3
    # Not chained: the relevance head is not capped by the purchase probability.
    assert model.get_layer("scorer").get_layer("relevance_tower") is not None
    # Its loss is its own binary cross-entropy against the label, untouched by the
    # examination of the logged position (the funnel's are multiplied by it).
    y = {t: np.full((8, 1), 0.5, "float32") for t in (*S.DEFAULT_TASKS, S.RELEVANCE_TASK)}
    y[S.POSITION] = np.full((8, 1), 3.0, "float32")
    losses = layer.task_losses(y, {t: keras.ops.convert_to_tensor(out[t]) for t in out})
    p = out[S.RELEVANCE_TASK].reshape(-1).astype("float64")
    expected = np.mean(-(0.5 * np.log(p) + 0.5 * np.log(1 - p)))
    assert float(losses[-1]) == pytest.approx(expected, rel=1e-4)
    examined = layer.position_bias(keras.ops.convert_to_tensor(y[S.POSITION]))
    q = (keras.ops.convert_to_numpy(examined) * out["click"]).reshape(-1).astype("float64")
    assert float(losses[0]) == pytest.approx(
        np.mean(-(0.5 * np.log(q) + 0.5 * np.log(1 - q))), rel=1e-4
    )
    # It trains, and the layer's settings survive a .keras file.
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert loss_layer(restored).funnel_size == 3
    np.testing.assert_allclose(
        restored.predict(x, verbose=0)[S.RELEVANCE_TASK],
        model.predict(x, verbose=0)[S.RELEVANCE_TASK],
        rtol=1e-5,
    )
