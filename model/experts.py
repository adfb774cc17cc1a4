import keras
from keras import ops

from model.mlp import MLP


def _mix(gate_logits, expert_outputs):
    """Softmax-weighted sum of stacked expert outputs [B, E, D] with gate logits [B, E]."""
    weights = ops.softmax(gate_logits, axis=-1)
    return ops.sum(ops.expand_dims(weights, -1) * expert_outputs, axis=1)


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

    Example:
    >>> layer = MultiGateExperts(num_tasks=3, num_experts=2, expert_units=(4,))
    >>> [tuple(o.shape) for o in layer(keras.ops.ones((2, 5)))]
    [(2, 4), (2, 4), (2, 4)]
    """

    def __init__(
        self, num_tasks, num_experts, expert_units, dropout=0.0, shared_output=False, **kwargs
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
        self.experts = [
            MLP(self.expert_units, dropout=dropout, name=f"expert_{i}") for i in range(num_experts)
        ]
        num_gates = self.num_tasks + int(self.shared_output)
        self.gates = [keras.layers.Dense(num_experts, name=f"gate_{g}") for g in range(num_gates)]

    def build(self, input_shape):
        for layer in self.experts + self.gates:
            layer.build(input_shape)

    def call(self, inputs, training=None):
        stacked = ops.stack([e(inputs, training=training) for e in self.experts], axis=1)
        return [_mix(gate(inputs), stacked) for gate in self.gates]

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

    Example:
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
        self.specific = [
            [
                MLP(self.expert_units, dropout=dropout, name=f"task_{k}_expert_{i}")
                for i in range(self.num_specific_experts)
            ]
            for k in range(self.num_tasks)
        ]
        self.shared = [
            MLP(self.expert_units, dropout=dropout, name=f"shared_expert_{i}")
            for i in range(self.num_shared_experts)
        ]
        width = self.num_specific_experts + self.num_shared_experts
        self.gates = [keras.layers.Dense(width, name=f"gate_{k}") for k in range(self.num_tasks)]

    def build(self, input_shape):
        if len(input_shape) != self.num_tasks + 1:
            raise ValueError(
                f"expected {self.num_tasks} task inputs and 1 shared input, got {len(input_shape)}"
            )
        for k in range(self.num_tasks):
            for layer in [*self.specific[k], self.gates[k]]:
                layer.build(input_shape[k])
        for layer in self.shared:
            layer.build(input_shape[-1])

    def call(self, inputs, training=None):
        shared_in = inputs[-1]
        shared = [e(shared_in, training=training) for e in self.shared]
        outputs = []
        for k in range(self.num_tasks):
            own = [e(inputs[k], training=training) for e in self.specific[k]]
            outputs.append(_mix(self.gates[k](inputs[k]), ops.stack(own + shared, axis=1)))
        return outputs

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
            }
        )
        return config
