"""Builds the multi-task ranker (MLPR and its baselines) from a RankerConfig:

1. deep & wide features: text encoder -> projections phi(q), psi(i) -> interactions, joined
   with the z-scored wide features and categorical embeddings;
2. multi-gate experts (MMoE) and/or 3. specific experts with customized gates (PLE), or a
   shared bottom, or one network per task;
4. one tower per task, with attention units passing information from task k-1 to task k;
5. probability transfer; the loss (uncertainty-weighted) rides in the graph.
"""

from __future__ import annotations

import keras

from components import schema as S
from model.attention_unit import AttentionUnit
from model.config import RankerConfig
from model.encoder import TextEncoder
from model.experts import CustomizedGateExperts, MultiGateExperts
from model.interactions import Interactions
from model.mlp import MLP
from model.multitask_loss import MultiTaskLoss, MultiTaskRanker
from model.probability_transfer import ProbabilityTransfer

TEXT_INPUTS = (
    "query_token_ids",
    "query_padding_mask",
    "product_token_ids",
    "product_padding_mask",
)


QUERY_PROJECTION = "query_projection"
PRODUCT_PROJECTION = "product_projection"
# Input names of the scorer sub-model: phi(q) and psi(i).
QUERY_EMBEDDING = "query_embedding"
PRODUCT_EMBEDDING = "product_embedding"


def model_input_names() -> tuple[str, ...]:
    return TEXT_INPUTS + (S.WIDE,) + tuple(S.vocab_id_name(c) for c in S.CATEGORICAL_COLUMNS)


def categorical_input_names() -> tuple[str, ...]:
    return tuple(S.vocab_id_name(c) for c in S.CATEGORICAL_COLUMNS)


def build_ranker(
    config: RankerConfig,
    encoder: TextEncoder,
    wide_dim: int,
    vocabulary_sizes: dict[str, int],
    query_length: int,
    product_length: int,
) -> MultiTaskRanker:
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
    phi = keras.layers.Dense(config.projection_dim, name=QUERY_PROJECTION)(query_vec)
    psi = keras.layers.Dense(config.projection_dim, name=PRODUCT_PROJECTION)(product_vec)
    deep = Interactions(config.interactions, name="interactions")([phi, psi])

    embedded = [
        keras.layers.Embedding(
            vocabulary_sizes[c], config.categorical_embedding_dim, name=f"{c}_embedding"
        )(inputs[S.vocab_id_name(c)])
        for c in S.CATEGORICAL_COLUMNS
    ]
    features = keras.layers.Concatenate(name="deep_and_wide")([deep, inputs[S.WIDE], *embedded])
    task_inputs = _task_inputs(config, features)

    heads, previous = [], None
    for k, task in enumerate(S.TASKS):
        tower = MLP(config.tower_units, dropout=config.dropout, name=f"{task}_tower")(
            task_inputs[k]
        )
        if config.attention_units and previous is not None:
            tower = AttentionUnit(config.tower_units[-1], name=f"{task}_attention")(
                [tower, previous]
            )
        previous = tower
        heads.append(keras.layers.Dense(1, activation="sigmoid", name=f"{task}_head")(tower))
    if config.probability_transfer:
        heads = ProbabilityTransfer(name="probability_transfer")(heads)
    heads = MultiTaskLoss(
        S.TASKS,
        uncertainty_weighting=config.uncertainty_loss,
        calibration_weight=config.calibration_weight,
        name=MultiTaskRanker.LOSS_LAYER,
    )(heads)
    outputs = {
        task: keras.layers.Identity(name=task)(head)
        for task, head in zip(S.TASKS, heads, strict=True)
    }
    return MultiTaskRanker(inputs=inputs, outputs=outputs, name="mlpr_ranker")


def compile_ranker(model: keras.Model, learning_rate: float) -> None:
    """Compiles `model` for training as the train step does: AdamW and an AUC per task. No
    loss is given: the ranker computes its multi-task loss (model/multitask_loss.py)."""
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate),
        metrics={t: [keras.metrics.AUC(name="auc")] for t in S.TASKS},
    )


def _task_inputs(config: RankerConfig, features) -> list:
    """One input per task for the towers: separate networks, a shared bottom, and/or the
    expert stages (MMoE, then customized-gate experts)."""
    tasks = len(S.TASKS)
    if config.separate_task_networks:
        return [
            MLP(config.expert_units, dropout=config.dropout, name=f"{task}_network")(features)
            for task in S.TASKS
        ]
    shared = features
    if config.shared_bottom_units:
        shared = MLP(config.shared_bottom_units, dropout=config.dropout, name="shared_bottom")(
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
            name="specific_experts",
        )([*per_task, shared])
    return per_task


# The ranker's parts as models of their own, for serving (the query encoded once per
# request, products encoded ahead of time). Each shares the ranker's layers and weights, so
# ranker(x) == scorer(query_encoder(x), product_encoder(x), x) for every input.


def query_encoder(ranker: keras.Model) -> keras.Model:
    """Query token ids and padding mask -> phi(q)."""
    return _sub_model(ranker, ("query_token_ids", "query_padding_mask"), QUERY_PROJECTION)


def product_encoder(ranker: keras.Model) -> keras.Model:
    """Product token ids and padding mask -> psi(i)."""
    return _sub_model(ranker, ("product_token_ids", "product_padding_mask"), PRODUCT_PROJECTION)


def scorer_input_names() -> tuple[str, ...]:
    """The scorer's inputs, in the order it takes them (a list: its first two inputs are
    intermediate tensors of the ranker, which cannot carry these names)."""
    return (QUERY_EMBEDDING, PRODUCT_EMBEDDING, S.WIDE, *categorical_input_names())


class Scorer:
    """The ranker after its text encoder: [phi(q), psi(i), wide features, categorical ids...]
    (in `scorer_input_names()` order) -> one probability per task (interactions, experts,
    towers, probability transfer).

    It runs the ranker's own graph from the two projections' outputs onward, with the
    ranker's layers and weights; the graph itself is left untouched, so the ranker still
    saves and trains as before.

    Args:
        ranker: a model built by `build_ranker` (fresh or loaded from a .keras file).
    """

    def __init__(self, ranker: keras.Model):
        self.ranker = ranker
        self._seeds = [
            _projection(ranker, QUERY_PROJECTION).output,
            _projection(ranker, PRODUCT_PROJECTION).output,
            *(ranker.input[name] for name in (S.WIDE, *categorical_input_names())),
        ]

    def __call__(self, inputs: list, training: bool = False) -> dict:
        if len(inputs) != len(self._seeds):
            raise ValueError(
                f"the scorer takes {len(self._seeds)} inputs {scorer_input_names()}, "
                f"got {len(inputs)}"
            )
        values = {id(ref): value for ref, value in zip(self._seeds, inputs, strict=True)}
        graph = self.ranker._nodes_by_depth
        for depth in sorted(graph, reverse=True):
            for node in graph[depth]:
                if not node.operation or node.is_input:
                    continue
                if any(id(x) not in values for x in node.input_tensors):
                    continue  # the text side: phi and psi are given
                args, kwargs = node.arguments.fill_in(values)
                outputs = node.operation(*args, training=training, **kwargs)
                for ref, value in zip(node.outputs, keras.tree.flatten(outputs), strict=True):
                    values[id(ref)] = value
        return {task: values[id(self.ranker.output[task])] for task in S.TASKS}


def scorer(ranker: keras.Model) -> Scorer:
    """The ranker's scorer (see `Scorer`)."""
    return Scorer(ranker)


def _projection(ranker: keras.Model, name: str) -> keras.layers.Layer:
    try:
        return ranker.get_layer(name)
    except ValueError as err:
        raise ValueError(
            f"model {ranker.name!r} has no {name!r} layer: only text rankers built by "
            "build_ranker can be split into encoders and a scorer"
        ) from err


def _sub_model(ranker: keras.Model, input_names: tuple[str, ...], output: str) -> keras.Model:
    projection = _projection(ranker, output)
    inputs = {name: ranker.input[name] for name in input_names}
    return keras.Model(
        inputs=inputs, outputs=projection.output, name=output.replace("projection", "encoder")
    )
