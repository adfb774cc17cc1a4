import keras
from keras import ops

POOLINGS = ("mean", "cls")


@keras.saving.register_keras_serializable(package="mlpr")
class TextEncoder(keras.layers.Layer):
    """A keras-hub text backbone pooled into one vector per text.

    The backbone is any keras-hub transformer backbone taking `token_ids` and
    `padding_mask` (DistilBERT) and optionally `segment_ids` (BERT, MiniLM); its sequence
    output is pooled with a padding-aware mean or by taking the first ([CLS]) position.

    Args:
        backbone: a `keras_hub.models.Backbone`.
        pooling: `"mean"` or `"cls"`.
        fine_tune: whether the backbone's weights are trained with the ranker.

    Example:
    >>> import keras_hub
    >>> backbone = keras_hub.models.DistilBertBackbone(
    ...     vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
    ...     intermediate_dim=16, max_sequence_length=8)
    >>> encoder = TextEncoder(backbone)
    >>> ids = keras.ops.ones((2, 8), dtype="int32")
    >>> encoder({"token_ids": ids, "padding_mask": ids}).shape
    (2, 8)
    """

    def __init__(self, backbone, pooling="mean", fine_tune=True, **kwargs):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}, got {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.fine_tune = bool(fine_tune)
        self.backbone.trainable = self.fine_tune
        self._needs_segment_ids = "segment_ids" in {t.name for t in backbone.inputs}

    @property
    def output_dim(self):
        return int(self.backbone.hidden_dim)

    def build(self, input_shape):
        self.built = True

    def call(self, inputs):
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        features = {"token_ids": token_ids, "padding_mask": padding_mask}
        if self._needs_segment_ids:
            features["segment_ids"] = ops.zeros_like(token_ids)
        sequence = self.backbone(features)
        if isinstance(sequence, dict):
            sequence = sequence["sequence_output"]
        if self.pooling == "cls":
            return sequence[:, 0, :]
        mask = ops.expand_dims(ops.cast(padding_mask, sequence.dtype), -1)
        total = ops.sum(sequence * mask, axis=1)
        return total / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape["token_ids"][0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "pooling": self.pooling,
                "fine_tune": self.fine_tune,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
