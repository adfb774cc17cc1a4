import math

import keras
from keras import ops

from model.mlp import SYNCHRONIZED, inference_affine


@keras.saving.register_keras_serializable(package="mlpr")
class ExpertStack(keras.layers.Layer):
    """`num_experts` MLPs of the same widths computed as one: each block's weights are
    stacked, so a block is one matrix product (one `einsum`) for all experts instead of one
    small Dense op per expert. Expert e equals `MLP(units, dropout, batch_norm)` with the
    weights `kernels[i][e]` (and batch norm over its own units).

    Input: [B, in], seen by every expert (the first block is then one [in, E * u0] matrix
    product), or [B, E, in], row e for expert e. Output: [B, E, units[-1]].

    The first block's matrix product is public on its own (`first_layer`,
    `after_first_layer`): it is linear in the input, so serving can split it by which part
    of the input a term depends on (serving/first_layer.py).

    Args:
        num_experts: E, how many experts.
        units: each expert's widths, e.g. `(512, 256, 128)`.
        dropout: dropout rate after each block.
        batch_norm: batch normalization before each activation (then no bias).

    Examples:
        >>> stack = ExpertStack(num_experts=3, units=(8, 4))
        >>> stack(keras.ops.ones((2, 5))).shape
        (2, 3, 4)
    """

    def __init__(self, num_experts, units, dropout=0.0, batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        units = tuple(int(u) for u in units)
        if int(num_experts) < 1:
            raise ValueError(f"`num_experts` must be >= 1, got {num_experts}")
        if not units or min(units) <= 0:
            raise ValueError(f"`units` must be a non-empty list of positive ints, got {units}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
        self.num_experts = int(num_experts)
        self.units = units
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.norms = (
            [
                keras.layers.BatchNormalization(name=f"batch_norm_{i}", synchronized=SYNCHRONIZED)
                for i in range(len(units))
            ]
            if batch_norm
            else []
        )
        self.dropouts = (
            [keras.layers.Dropout(dropout, name=f"dropout_{i}") for i in range(len(units))]
            if dropout > 0
            else []
        )

    def build(self, input_shape):
        if len(input_shape) not in (2, 3):
            raise ValueError(f"expected input [B, in] or [B, E, in], got {input_shape}")
        if len(input_shape) == 3 and input_shape[1] != self.num_experts:
            raise ValueError(
                f"input [B, E, in] needs E = num_experts = {self.num_experts}, got {input_shape}"
            )
        self.shared_input = len(input_shape) == 2
        experts, width = self.num_experts, int(input_shape[-1])
        self.kernels, self.biases = [], []
        for i, units in enumerate(self.units):
            shape = (width, experts * units) if i == 0 and self.shared_input else None
            self.kernels.append(
                self.add_weight(
                    shape=shape or (experts, width, units),
                    # Each expert's kernel drawn as Dense's default draws an [in, out] one.
                    initializer=keras.initializers.RandomUniform(*glorot_bounds(width, units)),
                    name=f"kernel_{i}",
                )
            )
            if not self.batch_norm:
                self.biases.append(
                    self.add_weight(shape=(experts * units,), initializer="zeros", name=f"bias_{i}")
                )
            if self.batch_norm:
                self.norms[i].build((None, experts * units))
            width = units

    def call(self, inputs, training=None):
        return self.after_first_layer(self.first_layer(inputs), training=training)

    def first_layer(self, inputs):
        """The first block's matrix product (and bias): [B, E * units[0]]."""
        kernel = self.kernels[0]
        if self.shared_input:
            out = ops.matmul(inputs, kernel)
        else:
            out = ops.reshape(
                ops.einsum("bei,eio->beo", inputs, kernel), (-1, kernel.shape[0] * kernel.shape[-1])
            )
        return out + self.biases[0] if self.biases else out

    def first_layer_kernel(self):
        """The first block as one [in, E * units[0]] matrix and its bias (or None), valid
        when every expert sees the same input."""
        kernel = self.kernels[0]
        if not self.shared_input:
            kernel = ops.reshape(ops.transpose(kernel, (1, 0, 2)), (kernel.shape[1], -1))
        return kernel, self.biases[0] if self.biases else None

    def fold_from(self, other: "ExpertStack") -> None:
        """Set this stack (without batch norm) to compute what `other` (with batch norm, of
        the same shape) computes at inference: each block's batch norm folded into its
        kernel and bias, `x @ k' + b' == norm(x @ k)` (serving's form, serving/first_layer.py)."""
        if self.batch_norm or not other.batch_norm:
            raise ValueError("fold_from folds a stack with batch norm into one without")
        for i, units in enumerate(self.units):
            scale, shift = inference_affine(other.norms[i])
            kernel = other.kernels[i]
            if len(kernel.shape) == 3:
                kernel = kernel * ops.reshape(scale, (self.num_experts, 1, units))
            else:
                kernel = kernel * scale
            self.kernels[i].assign(kernel)
            self.biases[i].assign(shift)

    def after_first_layer(self, pre, training=None):
        """The experts from the first block's product [B, E * units[0]] on: [B, E, units[-1]].

        At inference without batch norm (serving's folded form) each expert runs as its own
        matrix product, bias and ReLU, which oneDNN fuses into one kernel: on a CPU at
        serving batch sizes that beats the stacked product."""
        if not training and not self.norms:
            return ops.stack(self._folded_blocks(ops.split(ops.relu(pre), self.num_experts, -1)), 1)
        x = pre
        for i, units in enumerate(self.units):
            if i > 0:
                x = ops.einsum(
                    "bei,eio->beo",
                    ops.reshape(x, (-1, self.num_experts, self.units[i - 1])),
                    self.kernels[i],
                )
                x = ops.reshape(x, (-1, self.num_experts * units))
                if self.biases:
                    x = x + self.biases[i]
            if self.norms:
                x = self.norms[i](x, training=training)
            x = ops.relu(x)
            if self.dropouts:
                x = self.dropouts[i](x, training=training)
        return ops.reshape(x, (-1, self.num_experts, self.units[-1]))

    def folded_experts(self, inputs: list) -> list:
        """Inference in the folded form (no batch norm): expert e on `inputs[e]` ([B, in]
        each), its own fused product, bias and ReLU per block; a list of E [B, units[-1]]."""
        if self.norms:
            raise ValueError("folded_experts runs the folded form (batch_norm=False)")
        units = self.units[0]
        hidden = [
            ops.relu(
                ops.matmul(x, self.kernels[0][e]) + self.biases[0][e * units : (e + 1) * units]
            )
            for e, x in enumerate(inputs)
        ]
        return self._folded_blocks(hidden)

    def _folded_blocks(self, hidden: list) -> list:
        """The blocks after the first, expert by expert (folded form)."""
        for i, units in enumerate(self.units[1:], start=1):
            hidden = [
                ops.relu(
                    ops.matmul(h, self.kernels[i][e]) + self.biases[i][e * units : (e + 1) * units]
                )
                for e, h in enumerate(hidden)
            ]
        return hidden

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_experts, self.units[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_experts": self.num_experts,
                "units": list(self.units),
                "dropout": self.dropout,
                "batch_norm": self.batch_norm,
            }
        )
        return config


def glorot_bounds(fan_in, fan_out):
    """The bounds of Dense's default initializer (Glorot uniform) for one [in, out] kernel."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return -limit, limit
