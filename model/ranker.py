"""The multi-task ranker (MLPR and its baselines), composed of public parts:

- `query_encoder`: query token ids and padding mask -> phi(q) (text encoder, projection);
- `product_encoder`: product token ids and padding mask -> psi(i) (the same text encoder,
  its own projection);
- `scorer` (model/scorer.py): phi(q), psi(i), the wide features and the categorical ids ->
  one probability per task (interactions, experts, towers, attention units, probability
  transfer; the uncertainty-weighted loss rides in its graph).

`ranker(x) == scorer(query_encoder(x), product_encoder(x), x)` by construction: the ranker is
the functional composition of the three, which it exposes as attributes (as keras-hub tasks
expose `.backbone`). Serving encodes the query once per request and looks products up in a
pre-computed table; the train step trains the layers above a frozen encoder on cached text
vectors (`cached_ranker`).
"""

from __future__ import annotations

import keras

from contract import schema as S
from model.config import RankerConfig
from model.encoder import TextEncoder
from model.encoder_prior import UnitVector
from model.multitask_loss import MultiTaskRanker
from model.optimizer import EncoderAwareAdamW
from model.scorer import (
    PRODUCT_EMBEDDING,
    QUERY_EMBEDDING,
    SCORER,
    build_scorer,
    categorical_input_names,
    feature_inputs,
    scorer_input_names,
)

__all__ = [
    "PRODUCT_EMBEDDING",
    "QUERY_EMBEDDING",
    "Ranker",
    "build_ranker",
    "cached_ranker",
    "categorical_input_names",
    "compile_ranker",
    "model_input_names",
    "scorer_input_names",
]

TEXT_INPUTS = (
    "query_token_ids",
    "query_padding_mask",
    "product_token_ids",
    "product_padding_mask",
)
QUERY_PROJECTION = "query_projection"
PRODUCT_PROJECTION = "product_projection"
QUERY_UNIT, PRODUCT_UNIT = "query_unit_vector", "product_unit_vector"
QUERY_ENCODER = "query_encoder"
PRODUCT_ENCODER = "product_encoder"
TEXT_ENCODER = "text_encoder"
# Inputs of `cached_ranker`: what the frozen part of the text encoder gives per text.
QUERY_VECTOR = "query_vector"
PRODUCT_VECTOR = "product_vector"
QUERY_HIDDEN, QUERY_MASK = "query_hidden", "query_mask"
PRODUCT_HIDDEN, PRODUCT_MASK = "product_hidden", "product_mask"


def model_input_names() -> tuple[str, ...]:
    return TEXT_INPUTS + (S.WIDE,) + categorical_input_names() + (S.MARKET_ID,)


def _text_tower(encoder: TextEncoder, top, side: str) -> keras.Model:
    # Any length: serving and the text cache pad each batch only to its longest text.
    ids = keras.Input((None,), dtype="int32", name=f"{side}_token_ids")
    mask = keras.Input((None,), dtype="int32", name=f"{side}_padding_mask")
    vector = encoder({"token_ids": ids, "padding_mask": mask})
    return keras.Model(
        inputs={ids.name: ids, mask.name: mask},
        outputs=top(vector),
        name=f"{side}_encoder",
    )


class _TowerTop:
    """The text vector -> phi(q) or psi(i): the projection, then (with the encoder's prior)
    the unit encoder vector after it (model/encoder_prior.py)."""

    def __init__(self, projection: keras.layers.Dense, unit: UnitVector | None):
        self.projection, self.unit = projection, unit

    def __call__(self, vector):
        projected = self.projection(vector)
        return projected if self.unit is None else self.unit([projected, vector])


@keras.saving.register_keras_serializable(package="mlpr")
class Ranker(MultiTaskRanker):
    """A functional Keras model with one probability output per task of `config.tasks`.

    Inputs: packed token ids and padding masks for the query and the product text, the
    z-scored wide features, and one vocabulary id per categorical product field. Its parts
    are the attributes `query_encoder`, `product_encoder`, `scorer` and `text_encoder`.

    Args:
        config: the architecture (`RankerConfig` or its dict).
        encoder: the `TextEncoder`, shared by the query and the product side.
        wide_dim: number of wide features.
        vocabulary_sizes: size of each categorical vocabulary, out-of-vocabulary buckets
            included.
        query_length: packed query length in tokens.
        product_length: packed product text length in tokens.

    Examples:
        >>> ranker = Ranker(RankerConfig(), TextEncoder(backbone), 6, sizes, 16, 48)
        >>> phi = ranker.query_encoder({"query_token_ids": ids, "query_padding_mask": mask})
    """

    def __init__(
        self,
        config,
        encoder,
        wide_dim,
        vocabulary_sizes,
        query_length,
        product_length,
        **kwargs,
    ):
        if isinstance(config, dict):
            config = RankerConfig.from_dict(config)
        if encoder.fine_tune_layers != config.fine_tune_layers:
            raise ValueError(
                f"the encoder trains {encoder.fine_tune_layers!r} layers but the config says "
                f"{config.fine_tune_layers!r}"
            )
        # === Parts ===
        scorer = build_scorer(config, wide_dim, vocabulary_sizes, encoder_dim=encoder.output_dim)
        query_projection = keras.layers.Dense(config.projection_dim, name=QUERY_PROJECTION)
        product_projection = keras.layers.Dense(config.projection_dim, name=PRODUCT_PROJECTION)
        prior = config.encoder_prior
        query_top = _TowerTop(query_projection, UnitVector(name=QUERY_UNIT) if prior else None)
        product_top = _TowerTop(
            product_projection, UnitVector(name=PRODUCT_UNIT) if prior else None
        )
        query_encoder = _text_tower(encoder, query_top, "query")
        product_encoder = _text_tower(encoder, product_top, "product")
        if config.tied_projection_init:
            product_projection.kernel.assign(query_projection.kernel)
        # === Functional model ===
        inputs = {**query_encoder.input, **product_encoder.input, **feature_inputs(wide_dim)}
        outputs = scorer(
            {
                QUERY_EMBEDDING: query_encoder(
                    {n: inputs[n] for n in ("query_token_ids", "query_padding_mask")}
                ),
                PRODUCT_EMBEDDING: product_encoder(
                    {n: inputs[n] for n in ("product_token_ids", "product_padding_mask")}
                ),
                **{n: inputs[n] for n in scorer_input_names()[2:]},
            }
        )
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # === Config ===
        self.ranker_config = config
        self.wide_dim = int(wide_dim)
        self.vocabulary_sizes = {k: int(v) for k, v in vocabulary_sizes.items()}
        self.query_length = int(query_length)
        self.product_length = int(product_length)

    @property
    def query_encoder(self) -> keras.Model:
        return self.get_layer(QUERY_ENCODER)

    @property
    def product_encoder(self) -> keras.Model:
        return self.get_layer(PRODUCT_ENCODER)

    @property
    def scorer(self) -> MultiTaskRanker:
        return self.get_layer(SCORER)

    @property
    def text_encoder(self) -> TextEncoder:
        return self.query_encoder.get_layer(TEXT_ENCODER)

    @property
    def query_projection(self) -> keras.layers.Dense:
        return self.query_encoder.get_layer(QUERY_PROJECTION)

    @property
    def product_projection(self) -> keras.layers.Dense:
        return self.product_encoder.get_layer(PRODUCT_PROJECTION)

    def embed(self, side: str, vectors):
        """phi(q) (`side` "query") or psi(i) ("product") of text vectors [N, d], the text
        encoder's pooled outputs: what the query or product encoder gives after its text
        encoder."""
        tower, projection, unit = {
            "query": (self.query_encoder, QUERY_PROJECTION, QUERY_UNIT),
            "product": (self.product_encoder, PRODUCT_PROJECTION, PRODUCT_UNIT),
        }[side]
        projected = tower.get_layer(projection)(vectors)
        if not self.ranker_config.encoder_prior:
            return projected
        return tower.get_layer(unit)([projected, vectors])

    def get_config(self):
        # Rebuilt from its arguments, like keras-hub tasks: the functional graph (where the
        # text encoder is shared by two sub-models) is not serialised.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "config": self.ranker_config.to_dict(),
            "encoder": keras.saving.serialize_keras_object(self.text_encoder),
            "wide_dim": self.wide_dim,
            "vocabulary_sizes": self.vocabulary_sizes,
            "query_length": self.query_length,
            "product_length": self.product_length,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def build_ranker(
    config: RankerConfig,
    encoder: TextEncoder,
    wide_dim: int,
    vocabulary_sizes: dict[str, int],
    query_length: int,
    product_length: int,
) -> Ranker:
    """The ranker for `config` over `encoder` (whose name becomes `text_encoder`)."""
    if encoder.name != TEXT_ENCODER:
        encoder = TextEncoder(
            encoder.backbone,
            pooling=encoder.pooling,
            fine_tune_layers=encoder.fine_tune_layers,
            name=TEXT_ENCODER,
        )
    return Ranker(
        config, encoder, wide_dim, vocabulary_sizes, query_length, product_length, name="ranker"
    )


def cached_ranker(ranker: Ranker) -> MultiTaskRanker:
    """The ranker from the output of its frozen text-encoder part onward, sharing the
    ranker's layers and weights (training it trains the ranker).

    Frozen encoder (`fine_tune_layers=0`): inputs `query_vector` and `product_vector`, the
    text encoder's pooled outputs [N, d]. Partly fine-tuned (`0 < k < all`): `query_hidden`,
    `query_mask`, `product_hidden`, `product_mask`, the token vectors [N, T, d] entering the
    first trained block and their padding masks. Then the wide features and categorical ids.
    """
    encoder = ranker.text_encoder
    if encoder.trained_blocks == encoder.num_blocks:
        raise ValueError("a fully fine-tuned encoder has no frozen part to cache")
    width = encoder.output_dim
    features = feature_inputs(ranker.wide_dim)
    if encoder.trained_blocks == 0:
        inputs = {
            QUERY_VECTOR: keras.Input((width,), dtype="float32", name=QUERY_VECTOR),
            PRODUCT_VECTOR: keras.Input((width,), dtype="float32", name=PRODUCT_VECTOR),
        }
        query, product = inputs[QUERY_VECTOR], inputs[PRODUCT_VECTOR]
    else:
        inputs = {
            QUERY_HIDDEN: keras.Input((None, width), dtype="float32", name=QUERY_HIDDEN),
            QUERY_MASK: keras.Input((None,), dtype="int32", name=QUERY_MASK),
            PRODUCT_HIDDEN: keras.Input((None, width), dtype="float32", name=PRODUCT_HIDDEN),
            PRODUCT_MASK: keras.Input((None,), dtype="int32", name=PRODUCT_MASK),
        }
        top = _EncoderTop(encoder)
        query = top([inputs[QUERY_HIDDEN], inputs[QUERY_MASK]])
        product = top([inputs[PRODUCT_HIDDEN], inputs[PRODUCT_MASK]])
    inputs.update(features)
    outputs = ranker.scorer(
        {
            QUERY_EMBEDDING: ranker.embed("query", query),
            PRODUCT_EMBEDDING: ranker.embed("product", product),
            **features,
        }
    )
    return MultiTaskRanker(inputs=inputs, outputs=outputs, name="cached_ranker")


class _EncoderTop(keras.layers.Layer):
    """The trained blocks of a partly fine-tuned `TextEncoder` and its pooling, as a layer
    of `cached_ranker` (not saved: the ranker holds the same weights)."""

    def __init__(self, encoder: TextEncoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder

    def call(self, inputs, training=None):
        hidden, mask = inputs
        return self.encoder.encode_top(hidden, mask, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][-1])


def compile_ranker(
    model: keras.Model,
    learning_rate: float,
    encoder_learning_rate: float | None = None,
    encoder: keras.layers.Layer | None = None,
) -> None:
    """Compiles `model` for training as the train step does: AdamW and an AUC per task. No
    loss is given: the ranker computes its multi-task loss (model/multitask_loss.py).

    `encoder_learning_rate` (at most `learning_rate`; None: the same) is the rate of the
    trained weights of `encoder` (the ranker's text encoder), the layers above keep
    `learning_rate`."""
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate)
    if encoder_learning_rate is not None and encoder_learning_rate != learning_rate:
        if encoder is None:
            raise ValueError("encoder_learning_rate needs the encoder whose weights it slows")
        if not 0 < encoder_learning_rate <= learning_rate:
            raise ValueError(
                f"encoder_learning_rate must be in (0, learning_rate={learning_rate}], got "
                f"{encoder_learning_rate}"
            )
        optimizer = EncoderAwareAdamW(
            [v.path for v in encoder.trainable_variables],
            encoder_learning_rate / learning_rate,
            learning_rate=learning_rate,
        )
    model.compile(
        optimizer=optimizer,
        metrics={t: [keras.metrics.AUC(name="auc")] for t in model.output_names},
    )
