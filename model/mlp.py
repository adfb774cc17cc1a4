import keras

# Batch norm takes its statistics over the global batch when training runs on several
# replicas (tf.distribute), so that they are what one device would compute. Keras offers
# this on the TensorFlow backend only; outside a strategy it changes nothing.
SYNCHRONIZED = keras.backend.backend() == "tensorflow"


@keras.saving.register_keras_serializable(package="mlpr")
class MLP(keras.layers.Layer):
    """A stack of Dense -> BatchNormalization -> ReLU -> Dropout blocks (the paper's expert MLP).

    Args:
        units: width of each block, e.g. `(512, 256, 128)`.
        dropout: dropout rate after each block.
        batch_norm: insert batch normalization before the activation.

    Examples:
        >>> mlp = MLP(units=(8, 4), dropout=0.1)
        >>> mlp(keras.ops.ones((2, 3))).shape
        (2, 4)
    """

    def __init__(self, units, dropout=0.0, batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        units = tuple(int(u) for u in units)
        if not units or min(units) <= 0:
            raise ValueError(f"`units` must be a non-empty list of positive ints, got {units}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
        self.units = units
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self._blocks = []
        for i, width in enumerate(units):
            block = [keras.layers.Dense(width, use_bias=not batch_norm, name=f"dense_{i}")]
            if batch_norm:
                block.append(
                    keras.layers.BatchNormalization(
                        name=f"batch_norm_{i}", synchronized=SYNCHRONIZED
                    )
                )
            block.append(keras.layers.ReLU(name=f"relu_{i}"))
            if dropout > 0:
                block.append(keras.layers.Dropout(dropout, name=f"dropout_{i}"))
            self._blocks.append(block)

    def build(self, input_shape):
        shape = input_shape
        for block in self._blocks:
            for layer in block:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=None):
        return self.from_first_layer([self._blocks[0][0](inputs)], training=training)

    def first_layer_parts(self):
        """The linear map of the input that starts the MLP, `[(kernel [in, w], bias or
        None)]`: the first Dense (serving splits it by input part, serving/first_layer.py)."""
        dense = self._blocks[0][0]
        return [(dense.kernel, dense.bias)]

    def fold_from(self, other: "MLP") -> None:
        """Set this MLP (without batch norm) to compute what `other` (with batch norm, same
        widths) computes at inference: each batch norm folded into its Dense's kernel and
        bias (serving's form, serving/first_layer.py)."""
        if self.batch_norm or not other.batch_norm:
            raise ValueError("fold_from folds an MLP with batch norm into one without")
        for mine, theirs in zip(self._blocks, other._blocks, strict=True):
            dense, norm = theirs[0], theirs[1]
            scale, shift = inference_affine(norm)
            mine[0].kernel.assign(dense.kernel * scale)
            mine[0].bias.assign(shift)

    def from_first_layer(self, parts, training=None):
        """The MLP's output from `x @ kernel + bias` of its first Dense."""
        (x,) = parts
        for i, block in enumerate(self._blocks):
            for layer in block[1:] if i == 0 else block:
                x = layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {"units": list(self.units), "dropout": self.dropout, "batch_norm": self.batch_norm}
        )
        return config


def inference_affine(norm: keras.layers.BatchNormalization):
    """(scale, shift) with `norm(x) == x * scale + shift` at inference."""
    scale = keras.ops.rsqrt(norm.moving_variance + norm.epsilon)
    if norm.scale:
        scale = scale * norm.gamma
    shift = -norm.moving_mean * scale
    if norm.center:
        shift = shift + norm.beta
    return scale, shift
