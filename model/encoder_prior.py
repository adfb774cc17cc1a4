"""The text encoder's prior kept inside the ranker: its own zero-shot query-product cosine,
skipped to every task's logit.

A pretrained encoder ranks a query's products by the cosine of their text vectors with no
training at all, and on a small log that beats what the layers above can learn. So the
ranker carries that cosine from the raw encoder vectors (not through the trained
projections, which move) to each task's logit:

    P(task k) = sigmoid(correction_k + w_k * cosine(e(q), e(i)))

where correction_k is the task's head over its tower, zero-initialised, and w_k > 0 a
trainable scale. An untrained ranker therefore ranks every query's products exactly as the
encoder's cosine does (a monotone function of it, for every task and, through probability
transfer, for their products), and training can only add to it or, where the log says so,
learn w_k down.

Three layers, each one idea:

- `UnitVector` (in each text tower): phi(q) = [projection(e(q)), e(q) / |e(q)|], so the
  unit encoder vector rides along the projected one (and lands in serving's product table);
- `EncoderPrior` (first in the scorer): splits phi(q), psi(i) into the projected parts the
  scorer's interactions read and the prior, the cosine of the unit parts;
- `PriorSkip` (on the heads): the probabilities sigmoid(logit_k + w_k * prior).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

# The layers' names in the scorer.
ENCODER_PRIOR = "encoder_prior"
PRIOR_SKIP = "prior_skip"


@keras.saving.register_keras_serializable(package="mlpr")
class UnitVector(keras.layers.Layer):
    """[projected, raw] -> the projected vector with the raw vector, unit-normalised, after it.

    Examples:
        >>> keras.ops.convert_to_numpy(UnitVector()([keras.ops.ones((1, 2)), keras.ops.array([[3.0, 4.0]])])).tolist()
        [[1.0, 1.0, 0.6, 0.8]]
    """

    def call(self, inputs):
        projected, raw = inputs
        raw = ops.cast(raw, projected.dtype)
        unit = raw / ops.maximum(ops.norm(raw, axis=-1, keepdims=True), 1e-12)
        return ops.concatenate([projected, unit], axis=-1)

    def compute_output_shape(self, input_shape):
        projected, raw = input_shape
        return (*projected[:-1], projected[-1] + raw[-1])


@keras.saving.register_keras_serializable(package="mlpr")
class EncoderPrior(keras.layers.Layer):
    """[phi, psi], each [projection, unit encoder vector] (`UnitVector`) -> the projected
    phi(q) and psi(i) [N, projection_dim] and the encoder's cosine [N, 1].

    Args:
        projection_dim: the width of the projected part.
    """

    def __init__(self, projection_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.projection_dim = int(projection_dim)

    def call(self, inputs):
        phi, psi = inputs
        d = self.projection_dim
        prior = ops.sum(phi[:, d:] * psi[:, d:], axis=-1, keepdims=True)
        return [phi[:, :d], psi[:, :d], prior]

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0]
        return [(batch, self.projection_dim), (batch, self.projection_dim), (batch, 1)]

    def get_config(self):
        return {**super().get_config(), "projection_dim": self.projection_dim}


@keras.saving.register_keras_serializable(package="mlpr")
class PriorSkip(keras.layers.Layer):
    """[logit_1, ..., logit_K, prior] -> [sigmoid(logit_k + w_k * prior)], with one trainable
    scale w_k per task, starting at `initial_scale`.

    Args:
        tasks: K, the number of logits.
        initial_scale: w_k at initialisation (positive: a higher cosine, a higher probability).
    """

    def __init__(self, tasks: int, initial_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.tasks = int(tasks)
        self.initial_scale = float(initial_scale)

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(self.tasks,),
            initializer=keras.initializers.Constant(self.initial_scale),
            name="scale",
        )

    def call(self, inputs):
        *logits, prior = inputs
        if len(logits) != self.tasks:
            raise ValueError(f"PriorSkip expects {self.tasks} logits, got {len(logits)}")
        prior = ops.cast(prior, self.compute_dtype)
        return [
            ops.sigmoid(ops.cast(logit, self.compute_dtype) + self.scale[k] * prior)
            for k, logit in enumerate(logits)
        ]

    def compute_output_shape(self, input_shape):
        return list(input_shape[:-1])

    def get_config(self):
        return {
            **super().get_config(),
            "tasks": self.tasks,
            "initial_scale": self.initial_scale,
        }


def start_heads_at_rates(
    scorer: keras.Model,
    rates: dict[str, float],
    funnel: tuple[str, ...],
    mean_prior: float,
    probability_transfer: bool,
) -> dict[str, float]:
    """Set each task's head bias so that, with its correction still at zero, the scorer
    predicts the task's mean training rate for a pair of average prior: what a classifier's
    output bias starts at (the log-odds of the base rate), so that the first epochs learn to
    rank rather than to shift every probability from the prior's scale to the rates.

    `rates`: each task's mean training target; under probability transfer, a funnel task's
    head predicts the rate given the task before it (rate_k / rate_{k-1}). Returns the biases.
    """
    skip = scorer.get_layer(PRIOR_SKIP)
    scales = keras.ops.convert_to_numpy(skip.scale)
    biases, previous = {}, None
    for k, (task, rate) in enumerate(rates.items()):
        target = rate
        if probability_transfer and task in funnel and previous is not None:
            target = rate / max(previous, 1e-6)
        if task in funnel:
            previous = rate
        target = min(max(target, 1e-4), 1 - 1e-4)
        bias = float(np.log(target / (1 - target)) - scales[k] * mean_prior)
        head = scorer.get_layer(f"{task}_head")
        kernel, _ = head.get_weights()
        head.set_weights([kernel, np.array([bias], dtype=kernel.dtype)])
        biases[task] = bias
    return biases
