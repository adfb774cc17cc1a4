"""The expert stages of MLPR: multi-gate experts (MMoE) and customized-gate experts (PLE's
CGC). The experts of a stage run as one `ExpertStack` (stacked weights, one matrix product
per block), and the gates of a stage as one matrix product.

Both layers also give their first matrix products on their own (`first_layer_parts`,
`from_first_layer`; `call(x) == from_first_layer([x @ k + b for k, b in
first_layer_parts()])` when every input is x): serving splits those products by which part
of the input each term depends on (serving/first_layer.py).
"""

import keras
from keras import ops

from model.expert_stack import ExpertStack, glorot_bounds


def _mix(gate_logits, expert_outputs):
    """Softmax-weighted sums of expert outputs [B, (G,) E, D] by gate logits [B, G, E] ->
    [B, G, D]."""
    weights = ops.softmax(gate_logits, axis=-1)
    if len(expert_outputs.shape) == 3:
        return ops.einsum("bge,bed->bgd", weights, expert_outputs)
    return ops.einsum("bge,bged->bgd", weights, expert_outputs)


@keras.saving.register_keras_serializable(package="mlpr")
class MultiGateExperts(keras.layers.Layer):
    """Multi-experts with shared gating (MMoE; the paper's eq. 3).

    Shared experts see the same input; each task mixes them with its own softmax gate:
    `f_k(x) = sum_i softmax(W_k x)_i E_i(x)`. With `shared_output=True` one more gate gives a
    task-independent mixture, the input of the shared experts of a following
    `CustomizedGateExperts` layer.

    Args:
        num_tasks: number of task outputs.
        num_experts: number of shared experts.
        expert_units: each expert's MLP widths, e.g. `(512, 256, 128)`.
        dropout: dropout inside the experts.
        shared_output: also return the shared mixture as the last output.
        batch_norm: batch normalization in the experts (False: serving's folded form, see
            `fold_from`).

    Examples:
        >>> layer = MultiGateExperts(num_tasks=3, num_experts=2, expert_units=(4,))
        >>> [tuple(o.shape) for o in layer(keras.ops.ones((2, 5)))]
        [(2, 4), (2, 4), (2, 4)]
    """

    def __init__(
        self,
        num_tasks,
        num_experts,
        expert_units,
        dropout=0.0,
        shared_output=False,
        batch_norm=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_tasks < 1 or num_experts < 1:
            raise ValueError(
                f"num_tasks and num_experts must be >= 1, got {num_tasks} and {num_experts}"
            )
        self.num_tasks = int(num_tasks)
        self.num_experts = int(num_experts)
        self.expert_units = tuple(int(u) for u in expert_units)
        self.dropout = float(dropout)
        self.shared_output = bool(shared_output)
        self.num_gates = self.num_tasks + int(self.shared_output)
        self.batch_norm = bool(batch_norm)
        self.experts = ExpertStack(
            num_experts, self.expert_units, dropout, self.batch_norm, name="experts"
        )
        self.gates = keras.layers.Dense(self.num_gates * num_experts, name="gates")

    def build(self, input_shape):
        self.experts.build(input_shape)
        self.gates.build(input_shape)

    def call(self, inputs, training=None):
        return self.from_first_layer(
            [self.experts.first_layer(inputs), self.gates(inputs)], training=training
        )

    def first_layer_parts(self):
        """The linear maps of the input that start the layer, `[(kernel [in, w], bias or
        None)]`: the experts' first block, then the gates."""
        return [self.experts.first_layer_kernel(), (self.gates.kernel, self.gates.bias)]

    def fold_from(self, other: "MultiGateExperts") -> None:
        """This layer without batch norm set to compute what `other` (with it) computes at
        inference (ExpertStack.fold_from)."""
        self.experts.fold_from(other.experts)
        self.gates.set_weights(other.gates.get_weights())

    def from_first_layer(self, parts, training=None):
        """The layer's outputs from `x @ kernel + bias` of each of `first_layer_parts()`."""
        experts_pre, gate_logits = parts
        stacked = self.experts.after_first_layer(experts_pre, training=training)
        logits = ops.reshape(gate_logits, (-1, self.num_gates, self.num_experts))
        mixed = _mix(logits, stacked)
        return [mixed[:, g] for g in range(self.num_gates)]

    def compute_output_shape(self, input_shape):
        shape = (*input_shape[:-1], self.expert_units[-1])
        return [shape] * (self.num_tasks + int(self.shared_output))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tasks": self.num_tasks,
                "num_experts": self.num_experts,
                "expert_units": list(self.expert_units),
                "dropout": self.dropout,
                "shared_output": self.shared_output,
                "batch_norm": self.batch_norm,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mlpr")
class CustomizedGateExperts(keras.layers.Layer):
    """Specific experts with customized gating (PLE's CGC; the paper's eq. 4).

    Each task has its own experts; shared experts serve every task. Task k's gate, computed
    from task k's input, mixes task k's experts and the shared experts.

    Inputs: a list of `num_tasks` task inputs followed by one shared input (pass the same
    tensor `num_tasks + 1` times when there is a single input).

    Args:
        num_tasks: number of tasks.
        num_specific_experts: experts per task.
        num_shared_experts: experts shared by all tasks.
        expert_units: each expert's MLP widths.
        dropout: dropout inside the experts.
        batch_norm: batch normalization in the experts (False: serving's folded form, see
            `fold_from`).

    Examples:
        >>> layer = CustomizedGateExperts(2, 1, 1, expert_units=(4,))
        >>> x = keras.ops.ones((3, 5))
        >>> [tuple(o.shape) for o in layer([x, x, x])]
        [(3, 4), (3, 4)]
    """

    def __init__(
        self,
        num_tasks,
        num_specific_experts,
        num_shared_experts,
        expert_units,
        dropout=0.0,
        batch_norm=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if min(num_tasks, num_specific_experts) < 1 or num_shared_experts < 0:
            raise ValueError(
                "need num_tasks >= 1, num_specific_experts >= 1, num_shared_experts >= 0; got "
                f"{num_tasks}, {num_specific_experts}, {num_shared_experts}"
            )
        self.num_tasks = int(num_tasks)
        self.num_specific_experts = int(num_specific_experts)
        self.num_shared_experts = int(num_shared_experts)
        self.expert_units = tuple(int(u) for u in expert_units)
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        # Expert k * S + i is task k's i-th specific expert.
        self.specific = ExpertStack(
            self.num_tasks * self.num_specific_experts,
            self.expert_units,
            dropout,
            self.batch_norm,
            name="specific_experts",
        )
        self.shared = (
            ExpertStack(
                self.num_shared_experts,
                self.expert_units,
                dropout,
                self.batch_norm,
                name="shared_experts",
            )
            if self.num_shared_experts
            else None
        )
        self.gate_width = self.num_specific_experts + self.num_shared_experts

    def build(self, input_shape):
        if len(input_shape) != self.num_tasks + 1:
            raise ValueError(
                f"expected {self.num_tasks} task inputs and 1 shared input, got {len(input_shape)}"
            )
        width = input_shape[0][-1]
        if any(shape[-1] != width for shape in input_shape[: self.num_tasks]):
            raise ValueError(f"the task inputs must have one width, got {input_shape}")
        self.specific.build((None, self.specific.num_experts, width))
        if self.shared is not None:
            self.shared.build(input_shape[-1])
        # Task k's gate: [in, S + shared] and its bias, stacked over the tasks.
        self.gate_kernel = self.add_weight(
            shape=(self.num_tasks, width, self.gate_width),
            initializer=keras.initializers.RandomUniform(*glorot_bounds(width, self.gate_width)),
            name="gate_kernel",
        )
        self.gate_bias = self.add_weight(
            shape=(self.num_tasks * self.gate_width,), initializer="zeros", name="gate_bias"
        )

    def call(self, inputs, training=None):
        if not training and not self.batch_norm:
            return self._folded_call(inputs)
        tasks = ops.stack(inputs[: self.num_tasks], axis=1)  # [B, T, in]
        parts = [self.specific.first_layer(ops.repeat(tasks, self.num_specific_experts, axis=1))]
        if self.shared is not None:
            parts.append(self.shared.first_layer(inputs[-1]))
        logits = ops.einsum("bti,tio->bto", tasks, self.gate_kernel)
        parts.append(ops.reshape(logits, (-1, self.num_tasks * self.gate_width)) + self.gate_bias)
        return self.from_first_layer(parts, training=training)

    def _folded_call(self, inputs):
        """Inference in serving's folded form: every expert and gate as its own product on
        its own input, which oneDNN fuses with the bias and ReLU (ExpertStack.after_first_layer)."""
        s, width = self.num_specific_experts, self.gate_width
        own = self.specific.folded_experts(
            [inputs[k] for k in range(self.num_tasks) for _ in range(s)]
        )
        common = []
        if self.shared is not None:
            stacked = self.shared(inputs[-1], training=False)
            common = [stacked[:, e] for e in range(self.num_shared_experts)]
        outputs = []
        for k in range(self.num_tasks):
            logits = ops.matmul(inputs[k], self.gate_kernel[k])
            logits = logits + self.gate_bias[k * width : (k + 1) * width]
            experts = ops.stack(own[k * s : (k + 1) * s] + common, axis=1)  # [B, S + shared, D]
            outputs.append(_mix(ops.expand_dims(logits, 1), experts)[:, 0])
        return outputs

    def first_layer_parts(self):
        """The linear maps that start the layer, `[(kernel [in, w], bias or None)]`, when
        every input is the same tensor: the specific experts' first block, the shared
        experts' (if any), then the gates."""
        gates = ops.reshape(
            ops.transpose(self.gate_kernel, (1, 0, 2)), (self.gate_kernel.shape[1], -1)
        )
        shared = [self.shared.first_layer_kernel()] if self.shared is not None else []
        return [self.specific.first_layer_kernel(), *shared, (gates, self.gate_bias)]

    def fold_from(self, other: "CustomizedGateExperts") -> None:
        """This layer without batch norm set to compute what `other` (with it) computes at
        inference (ExpertStack.fold_from)."""
        self.specific.fold_from(other.specific)
        if self.shared is not None:
            self.shared.fold_from(other.shared)
        self.gate_kernel.assign(other.gate_kernel)
        self.gate_bias.assign(other.gate_bias)

    def from_first_layer(self, parts, training=None):
        """The layer's outputs from `x @ kernel + bias` of each of `first_layer_parts()`."""
        own = self.specific.after_first_layer(parts[0], training=training)
        experts = ops.reshape(
            own, (-1, self.num_tasks, self.num_specific_experts, self.expert_units[-1])
        )
        if self.shared is not None:
            common = self.shared.after_first_layer(parts[1], training=training)
            common = ops.repeat(ops.expand_dims(common, 1), self.num_tasks, axis=1)
            experts = ops.concatenate([experts, common], axis=2)
        logits = ops.reshape(parts[-1], (-1, self.num_tasks, self.gate_width))
        mixed = _mix(logits, experts)
        return [mixed[:, k] for k in range(self.num_tasks)]

    def compute_output_shape(self, input_shape):
        return [(*input_shape[k][:-1], self.expert_units[-1]) for k in range(self.num_tasks)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tasks": self.num_tasks,
                "num_specific_experts": self.num_specific_experts,
                "num_shared_experts": self.num_shared_experts,
                "expert_units": list(self.expert_units),
                "dropout": self.dropout,
                "batch_norm": self.batch_norm,
            }
        )
        return config
