"""The ranker after its text encoder (stages 1-5 on the projected text vectors): phi(q),
psi(i), the z-scored wide features and the categorical ids -> one probability per task.

It is a functional model of its own, so that the train step can run it on cached text
vectors, and serving on the query encoded once per request and on pre-computed products.
"""

from __future__ import annotations

import keras

from contract import schema as S
from model.attention_unit import AttentionUnit
from model.config import RankerConfig
from model.cross_network import CrossNetwork
from model.encoder_prior import ENCODER_PRIOR, PRIOR_SKIP, EncoderPrior, PriorSkip
from model.experts import CustomizedGateExperts, MultiGateExperts
from model.interactions import Interactions
from model.mlp import MLP
from model.multitask_loss import MultiTaskLoss, MultiTaskRanker
from model.probability_transfer import ProbabilityTransfer
from model.region_mask import RegionMask

# Input names of the scorer: phi(q) and psi(i), then the wide features and categorical ids.
QUERY_EMBEDDING = "query_embedding"
PRODUCT_EMBEDDING = "product_embedding"
SCORER = "scorer"
# The concatenated features that the first networks of the scorer read.
FEATURES = "deep_and_wide"


def categorical_input_names() -> tuple[str, ...]:
    return tuple(S.vocab_id_name(c) for c in S.CATEGORICAL_COLUMNS)


def scorer_input_names() -> tuple[str, ...]:
    return (QUERY_EMBEDDING, PRODUCT_EMBEDDING, S.WIDE, *categorical_input_names(), S.MARKET_ID)


def feature_inputs(wide_dim: int) -> dict:
    """Keras inputs of the wide features, the categorical ids and the market id (read by the
    region masks only; 0 for a log without markets)."""
    inputs = {S.WIDE: keras.Input((wide_dim,), dtype="float32", name=S.WIDE)}
    for name in (*categorical_input_names(), S.MARKET_ID):
        inputs[name] = keras.Input((), dtype="int32", name=name)
    return inputs


def build_scorer(
    config: RankerConfig,
    wide_dim: int,
    vocabulary_sizes: dict[str, int],
    batch_norm: bool = True,
    encoder_dim: int = 0,
) -> MultiTaskRanker:
    """The upper network as a functional model named `scorer`; its inputs are named by
    `scorer_input_names()` and its outputs are one probability [N, 1] per task.

    With `config.encoder_prior`, phi(q) and psi(i) carry the unit text-encoder vector of
    `encoder_dim` after their projection (model/encoder_prior.py), and its cosine is skipped
    to every task's logit. `batch_norm=False` builds serving's folded form
    (`folded_scorer`), not a model to train."""
    missing = [c for c in S.CATEGORICAL_COLUMNS if c not in vocabulary_sizes]
    if missing:
        raise ValueError(f"vocabulary_sizes lacks {missing}; got {sorted(vocabulary_sizes)}")
    if wide_dim <= 0:
        raise ValueError(f"wide_dim must be positive, got {wide_dim}")
    if config.encoder_prior and encoder_dim <= 0:
        raise ValueError("the encoder prior needs the text encoder's width (encoder_dim)")
    width = config.projection_dim + (encoder_dim if config.encoder_prior else 0)
    inputs = {
        QUERY_EMBEDDING: keras.Input((width,), dtype="float32", name=QUERY_EMBEDDING),
        PRODUCT_EMBEDDING: keras.Input((width,), dtype="float32", name=PRODUCT_EMBEDDING),
        **feature_inputs(wide_dim),
    }
    phi, psi, prior = inputs[QUERY_EMBEDDING], inputs[PRODUCT_EMBEDDING], None
    if config.encoder_prior:
        phi, psi, prior = EncoderPrior(config.projection_dim, dtype="float32", name=ENCODER_PRIOR)(
            [phi, psi]
        )
    deep = Interactions(config.interactions, name="interactions")([phi, psi])
    embedded = [
        keras.layers.Embedding(
            vocabulary_sizes[c], config.categorical_embedding_dim, name=f"{c}_embedding"
        )(inputs[S.vocab_id_name(c)])
        for c in S.CATEGORICAL_COLUMNS
    ]
    features = keras.layers.Concatenate(name=FEATURES)([deep, inputs[S.WIDE], *embedded])
    tasks = training_tasks(config)
    task_inputs = _task_inputs(config, tasks, features, batch_norm)
    markets = vocabulary_sizes.get(S.MARKET, 1)

    def masked(representation, name: str):
        if not config.region_mask:
            return representation
        return RegionMask(markets, name=name)([representation, inputs[S.MARKET_ID]])

    def head(task: str, tower):
        # With the prior, a logit whose correction starts at zero (PriorSkip adds the prior
        # and the sigmoid); without, the probability. Float32 under mixed precision too.
        if config.encoder_prior:
            return keras.layers.Dense(
                1, kernel_initializer="zeros", dtype="float32", name=f"{task}_head"
            )(tower)
        return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=f"{task}_head")(
            tower
        )

    heads, previous = [], None
    for k, task in enumerate(tasks):
        tower = MLP(config.tower_units, config.dropout, batch_norm, name=f"{task}_tower")(
            masked(task_inputs[k], f"{task}_input_mask")
        )
        tower = masked(tower, f"{task}_tower_mask")
        in_funnel = k < len(config.tasks)  # the relevance task is outside the funnel
        if in_funnel and config.attention_units and previous is not None:
            tower = AttentionUnit(config.tower_units[-1], name=f"{task}_attention")(
                [tower, previous]
            )
        previous = tower
        heads.append(head(task, tower))
    if config.encoder_prior:
        heads = PriorSkip(len(tasks), config.prior_scale, dtype="float32", name=PRIOR_SKIP)(
            [*heads, prior]
        )
    if config.probability_transfer:
        funnel = len(config.tasks)
        heads = [
            *ProbabilityTransfer(dtype="float32", name="probability_transfer")(heads[:funnel]),
            *heads[funnel:],
        ]
    heads = MultiTaskLoss(
        tasks,
        funnel_size=len(config.tasks),
        balancing=config.loss_balancing,
        task_weights=config.task_weights or None,
        gradnorm_alpha=config.gradnorm_alpha,
        dwa_temperature=config.dwa_temperature,
        calibration_weight=config.calibration_weight,
        position_buckets=config.position_buckets,
        listwise_tasks=config.listwise_tasks,
        dtype="float32",
        name=MultiTaskRanker.LOSS_LAYER,
    )(heads)
    outputs = {
        task: keras.layers.Identity(dtype="float32", name=task)(head)
        for task, head in zip(tasks, heads, strict=True)
    }
    return MultiTaskRanker(inputs=inputs, outputs=outputs, name=SCORER)


def folded_scorer(
    scorer: keras.Model,
    config: RankerConfig,
    wide_dim: int,
    vocabulary_sizes: dict[str, int],
    precision: str = "float32",
) -> MultiTaskRanker:
    """A scorer that computes what the trained `scorer` computes at inference, with every
    batch normalization folded into the kernel and bias before it: fewer ops per request, and
    the experts' products fuse with their bias and ReLU. Serving's form (serving/first_layer.py);
    it equals `scorer(x, training=False)` up to float rounding. `precision`: the Keras dtype
    policy its layers compute under ("mixed_bfloat16": bfloat16 products, float32 weights,
    heads and outputs)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        folded = build_scorer(
            config, wide_dim, vocabulary_sizes, batch_norm=False, encoder_dim=encoder_dim(scorer)
        )
    finally:
        keras.config.set_dtype_policy(previous)
    for mine, theirs in zip(folded.layers, scorer.layers, strict=True):
        if mine.name != theirs.name:
            raise ValueError(f"the scorers differ: layer {mine.name!r} vs {theirs.name!r}")
        if hasattr(mine, "fold_from"):
            mine.fold_from(theirs)
        else:
            mine.set_weights(theirs.get_weights())
    return folded


def feature_segments(scorer: keras.Model) -> list[tuple[str, int]]:
    """The parts of the scorer's features (the `FEATURES` concatenation) in order, as
    `(name, width)`: the interactions (`cosine`, `hadamard`, then `query` and `product` for
    `concat`), the wide features (`S.WIDE`) and each categorical column's embedding."""
    interactions = scorer.get_layer("interactions")
    dim = interactions.input[0].shape[-1]
    segments = []
    for kind in interactions.kinds:
        if kind == "cosine":
            segments.append(("cosine", 1))
        elif kind == "hadamard":
            segments.append(("hadamard", dim))
        else:
            segments += [("query", dim), ("product", dim)]
    segments.append((S.WIDE, scorer.get_layer(S.WIDE).output.shape[-1]))
    for column in S.CATEGORICAL_COLUMNS:
        segments.append((column, scorer.get_layer(f"{column}_embedding").output_dim))
    return segments


def encoder_dim(scorer: keras.Model) -> int:
    """The width of the unit encoder vector that phi(q) and psi(i) carry after their
    projection (model/encoder_prior.py); 0 for a scorer without the encoder's prior."""
    prior = prior_layer(scorer)
    if prior is None:
        return 0
    return scorer.get_layer(QUERY_EMBEDDING).output.shape[-1] - prior.projection_dim


def prior_layer(scorer: keras.Model) -> EncoderPrior | None:
    """The scorer's `EncoderPrior` layer, or None without the encoder's prior."""
    if ENCODER_PRIOR not in {layer.name for layer in scorer.layers}:
        return None
    return scorer.get_layer(ENCODER_PRIOR)


def training_tasks(config: RankerConfig) -> tuple[str, ...]:
    """The tasks the scorer learns: the funnel's, then the relevance task when configured."""
    return (*config.tasks, *((S.RELEVANCE_TASK,) if config.relevance_task else ()))


def _task_inputs(config: RankerConfig, names, features, batch_norm: bool) -> list:
    """One input per task of `names` for the towers: a cross network (DCN-V2), then separate
    networks, a shared bottom, and/or the expert stages (MMoE, then customized-gate experts)."""
    tasks = len(names)
    if config.cross_layers:
        features = CrossNetwork(config.cross_layers, name="cross_network")(features)
    if config.separate_task_networks:
        return [
            MLP(config.expert_units, config.dropout, batch_norm, name=f"{task}_network")(features)
            for task in names
        ]
    shared = features
    if config.shared_bottom_units:
        shared = MLP(config.shared_bottom_units, config.dropout, batch_norm, name="shared_bottom")(
            features
        )
    per_task = [shared] * tasks
    if config.multi_gate_experts:
        mixed = MultiGateExperts(
            tasks,
            config.num_shared_experts,
            config.expert_units,
            dropout=config.dropout,
            shared_output=config.specific_experts,
            batch_norm=batch_norm,
            name="multi_gate_experts",
        )(shared)
        per_task = mixed[:tasks]
        shared = mixed[tasks] if config.specific_experts else shared
    if config.specific_experts:
        per_task = CustomizedGateExperts(
            tasks,
            config.num_specific_experts,
            config.num_shared_experts,
            config.expert_units,
            dropout=config.dropout,
            batch_norm=batch_norm,
            name="specific_experts",
        )([*per_task, shared])
    return per_task
