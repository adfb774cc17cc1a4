import keras
from keras import ops

POOLINGS = ("mean", "cls")
ALL_LAYERS = "all"


def check_fine_tune_layers(value) -> int | str:
    """`"all"` or a whole number of top transformer layers >= 0 (a digit string is taken as
    that number); anything else is a ValueError naming what was received."""
    if value == ALL_LAYERS:
        return ALL_LAYERS
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"fine_tune_layers must be 'all' or a whole number >= 0, got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="mlpr")
class TextEncoder(keras.layers.Layer):
    """A keras-hub text backbone pooled into one vector per text.

    The backbone is any keras-hub transformer backbone taking `token_ids` and
    `padding_mask` (DistilBERT) and optionally `segment_ids` (BERT, MiniLM), with its
    transformer blocks in `backbone.transformer_layers`; its sequence output is pooled with a
    padding-aware mean or by taking the first ([CLS]) position.

    With `fine_tune_layers=k` only the top k transformer blocks are trained (0: the encoder
    is frozen; "all": every weight, embeddings included). The frozen part runs in inference
    mode (no dropout), so its outputs are fixed and can be computed once and cached: see
    `lower_model()` and `encode_top()`.

    Args:
        backbone: a `keras_hub.models.Backbone`.
        pooling: `"mean"` or `"cls"`.
        fine_tune_layers: `"all"`, or how many of the top transformer blocks are trained.

    Examples:
        >>> import keras_hub
        >>> backbone = keras_hub.models.DistilBertBackbone(
        ...     vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
        ...     intermediate_dim=16, max_sequence_length=8)
        >>> encoder = TextEncoder(backbone)
        >>> ids = keras.ops.ones((2, 8), dtype="int32")
        >>> encoder({"token_ids": ids, "padding_mask": ids}).shape
        (2, 8)
    """

    def __init__(self, backbone, pooling="mean", fine_tune_layers=ALL_LAYERS, **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.fine_tune_layers = check_fine_tune_layers(fine_tune_layers)
        blocks = self.num_blocks
        if self.fine_tune_layers != ALL_LAYERS and self.fine_tune_layers > blocks:
            raise ValueError(
                f"fine_tune_layers={self.fine_tune_layers} but the backbone has {blocks} "
                "transformer layers"
            )
        self._needs_segment_ids = "segment_ids" in {t.name for t in backbone.inputs}
        self.backbone.trainable = self.trained_blocks > 0
        if self.trained_blocks > 0 and self.fine_tune_layers != ALL_LAYERS:
            top = {id(layer) for layer in self.top_blocks}
            for layer in self.backbone.layers:
                if id(layer) not in top:
                    layer.trainable = False

    @property
    def num_blocks(self) -> int:
        return len(self.backbone.transformer_layers)

    @property
    def trained_blocks(self) -> int:
        """How many transformer blocks are trained (all of them for "all")."""
        return self.num_blocks if self.fine_tune_layers == ALL_LAYERS else self.fine_tune_layers

    @property
    def top_blocks(self) -> list:
        """The trained transformer blocks, bottom to top (empty when frozen)."""
        blocks = self.backbone.transformer_layers
        return list(blocks[len(blocks) - self.trained_blocks :])

    @property
    def output_dim(self):
        return int(self.backbone.hidden_dim)

    def build(self, input_shape):
        self.built = True

    def _features(self, token_ids, padding_mask) -> dict:
        features = {"token_ids": token_ids, "padding_mask": padding_mask}
        if self._needs_segment_ids:
            features["segment_ids"] = ops.zeros_like(token_ids)
        return features

    def call(self, inputs, training=None):
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        # Only full fine-tuning trains the embeddings and every block; a frozen part runs
        # in inference mode, as when its outputs are cached.
        full = self.fine_tune_layers == ALL_LAYERS
        sequence = self.backbone(
            self._features(token_ids, padding_mask), training=training if full else False
        )
        if isinstance(sequence, dict):
            sequence = sequence["sequence_output"]
        return self.pool(sequence, padding_mask)

    def pool(self, sequence, padding_mask):
        """[N, T, d] token vectors -> [N, d] text vectors."""
        if self.pooling == "cls":
            return sequence[:, 0, :]
        mask = ops.expand_dims(ops.cast(padding_mask, sequence.dtype), -1)
        total = ops.sum(sequence * mask, axis=1)
        return total / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def lower_model(self) -> keras.Model:
        """The frozen part as a model of its own: token ids and padding mask -> the token
        vectors [N, T, d] entering the first trained block (built from the backbone's public
        graph; it shares the backbone's weights). Only for 0 < fine_tune_layers < all."""
        if not 0 < self.trained_blocks < self.num_blocks:
            raise ValueError(
                "lower_model() splits a partly fine-tuned encoder; this one has "
                f"fine_tune_layers={self.fine_tune_layers!r} of {self.num_blocks}"
            )
        below = self.backbone.transformer_layers[self.num_blocks - self.trained_blocks - 1]
        inputs = {name: self.backbone.input[name] for name in self.backbone.input}
        return keras.Model(inputs=inputs, outputs=below.output, name="frozen_encoder")

    def lower_inputs(self, token_ids, padding_mask) -> dict:
        """The inputs `lower_model()` takes for these tokens."""
        return self._features(token_ids, padding_mask)

    def encode_top(self, hidden, padding_mask, training=None):
        """The trained blocks over the frozen part's token vectors, then pooling."""
        for block in self.top_blocks:
            hidden = block(hidden, padding_mask=padding_mask, training=training)
        return self.pool(hidden, padding_mask)

    def compute_output_shape(self, input_shape):
        return (input_shape["token_ids"][0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "pooling": self.pooling,
                "fine_tune_layers": self.fine_tune_layers,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
