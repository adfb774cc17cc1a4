"""Builds the multi-task ranker: text towers + interactions + wide features -> shared bottom
-> one tower per task -> (optionally) probability transfer."""

from __future__ import annotations

import keras

from components import schema as S
from model.config import RankerConfig
from model.encoder import TextEncoder
from model.interactions import Interactions
from model.mlp import MLP
from model.probability_transfer import ProbabilityTransfer

TEXT_INPUTS = (
    "query_token_ids",
    "query_padding_mask",
    "product_token_ids",
    "product_padding_mask",
)


def model_input_names() -> tuple[str, ...]:
    return TEXT_INPUTS + (S.WIDE,) + tuple(S.vocab_id_name(c) for c in S.CATEGORICAL_COLUMNS)


def build_ranker(
    config: RankerConfig,
    encoder: TextEncoder,
    wide_dim: int,
    vocabulary_sizes: dict[str, int],
    query_length: int,
    product_length: int,
) -> keras.Model:
    """A functional Keras model with one probability output per task in `S.TASKS`.

    Inputs: packed token ids and padding masks for the query and the product text, the
    z-scored wide features, and one vocabulary id per categorical product field
    (`vocabulary_sizes` counts each vocabulary's out-of-vocabulary buckets).
    """
    missing = [c for c in S.CATEGORICAL_COLUMNS if c not in vocabulary_sizes]
    if missing:
        raise ValueError(f"vocabulary_sizes lacks {missing}; got {sorted(vocabulary_sizes)}")
    if wide_dim <= 0:
        raise ValueError(f"wide_dim must be positive, got {wide_dim}")

    inputs = {
        "query_token_ids": keras.Input((query_length,), dtype="int32", name="query_token_ids"),
        "query_padding_mask": keras.Input(
            (query_length,), dtype="int32", name="query_padding_mask"
        ),
        "product_token_ids": keras.Input(
            (product_length,), dtype="int32", name="product_token_ids"
        ),
        "product_padding_mask": keras.Input(
            (product_length,), dtype="int32", name="product_padding_mask"
        ),
        S.WIDE: keras.Input((wide_dim,), dtype="float32", name=S.WIDE),
    }
    for column in S.CATEGORICAL_COLUMNS:
        name = S.vocab_id_name(column)
        inputs[name] = keras.Input((), dtype="int32", name=name)

    query_vec = encoder(
        {"token_ids": inputs["query_token_ids"], "padding_mask": inputs["query_padding_mask"]}
    )
    product_vec = encoder(
        {"token_ids": inputs["product_token_ids"], "padding_mask": inputs["product_padding_mask"]}
    )
    phi = keras.layers.Dense(config.projection_dim, name="query_projection")(query_vec)
    psi = keras.layers.Dense(config.projection_dim, name="product_projection")(product_vec)
    deep = Interactions(config.interactions, name="interactions")([phi, psi])

    embedded = [
        keras.layers.Embedding(
            vocabulary_sizes[c], config.categorical_embedding_dim, name=f"{c}_embedding"
        )(inputs[S.vocab_id_name(c)])
        for c in S.CATEGORICAL_COLUMNS
    ]
    features = keras.layers.Concatenate(name="deep_and_wide")([deep, inputs[S.WIDE], *embedded])
    shared = MLP(config.bottom_units, dropout=config.dropout, name="shared_bottom")(features)

    heads = []
    for task in S.TASKS:
        tower = MLP(config.tower_units, dropout=config.dropout, name=f"{task}_tower")(shared)
        heads.append(keras.layers.Dense(1, activation="sigmoid", name=f"{task}_head")(tower))
    if config.probability_transfer:
        heads = ProbabilityTransfer(name="probability_transfer")(heads)
    outputs = {
        task: keras.layers.Identity(name=task)(head)
        for task, head in zip(S.TASKS, heads, strict=True)
    }
    return keras.Model(inputs=inputs, outputs=outputs, name="mlpr_ranker")
