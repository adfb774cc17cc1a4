import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mlpr")
class AttentionUnit(keras.layers.Layer):
    """Passes information from task k-1 to task k (the paper's eq. 5-7, after AITM).

    The previous task's output `a_{k-1}` goes through a transfer layer `q = ReLU(W a_{k-1})`;
    the current tower output `t_k` and `q` are two items attended over with learned query,
    key and value projections: `w_u = softmax_u(<Q u, K u> / sqrt(d))`,
    `a_k = sum_u w_u V u` for u in {t_k, q}.

    Inputs: `[t_k, a_{k-1}]`, both [batch, d].

    Args:
        units: d, the width of the tower outputs.

    Examples:
        >>> unit = AttentionUnit(units=4)
        >>> unit([keras.ops.ones((2, 4)), keras.ops.zeros((2, 4))]).shape
        (2, 4)
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"`units` must be >= 1, got {units}")
        self.units = int(units)
        self.transfer = keras.layers.Dense(self.units, activation="relu", name="transfer")
        self.query = keras.layers.Dense(self.units, use_bias=False, name="query")
        self.key = keras.layers.Dense(self.units, use_bias=False, name="key")
        self.value = keras.layers.Dense(self.units, use_bias=False, name="value")

    def build(self, input_shape):
        tower_shape, previous_shape = input_shape
        if tower_shape[-1] != self.units:
            raise ValueError(f"tower output width {tower_shape[-1]} != units {self.units}")
        self.transfer.build(previous_shape)
        for layer in (self.query, self.key, self.value):
            layer.build(tower_shape)

    def call(self, inputs):
        tower, previous = inputs
        items = ops.stack([tower, self.transfer(previous)], axis=1)  # [B, 2, d]
        scores = ops.sum(self.query(items) * self.key(items), axis=-1) / math.sqrt(self.units)
        weights = ops.softmax(scores, axis=1)
        return ops.sum(ops.expand_dims(weights, -1) * self.value(items), axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units})
        return config
