"""AdamW with its own, lower learning rate for chosen weights: the usual BERT practice of
fine-tuning a pretrained text encoder more gently than the freshly initialised layers above
it, so that the ranker's early, large steps do not wreck the pretrained weights."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="mlpr")
class EncoderAwareAdamW(keras.optimizers.AdamW):
    """AdamW whose step for the variables named in `slow_variable_paths` uses the learning
    rate times `slow_learning_rate_multiplier`; every other variable trains at the learning
    rate. (AdamW's decoupled weight decay, applied apart from the step, stays at the base
    rate: 1e-3 x 0.004 per step by default.)

    Args:
        slow_variable_paths: `variable.path` of each slowed variable (e.g. the trained part of
            the text encoder).
        slow_learning_rate_multiplier: their learning rate over the base one, in (0, 1].
        **kwargs: `keras.optimizers.AdamW` arguments.

    Examples:
        >>> encoder_paths = [v.path for v in ranker.text_encoder.trainable_variables]
        >>> EncoderAwareAdamW(encoder_paths, 0.02, learning_rate=1e-3)  # the encoder at 2e-5
    """

    def __init__(self, slow_variable_paths=(), slow_learning_rate_multiplier=1.0, **kwargs):
        super().__init__(**kwargs)
        multiplier = float(slow_learning_rate_multiplier)
        if not 0.0 < multiplier <= 1.0:
            raise ValueError(
                f"slow_learning_rate_multiplier must be in (0, 1], got {slow_learning_rate_multiplier}"
            )
        self.slow_variable_paths = tuple(slow_variable_paths)
        self.slow_learning_rate_multiplier = multiplier
        self._multipliers: list[float] = []

    def build(self, variables):
        super().build(variables)
        slow = set(self.slow_variable_paths)
        self._multipliers = [
            self.slow_learning_rate_multiplier if v.path in slow else 1.0 for v in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._multipliers[self._get_variable_index(variable)]
        if multiplier != 1.0:
            learning_rate = keras.ops.multiply(learning_rate, multiplier)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "slow_variable_paths": list(self.slow_variable_paths),
                "slow_learning_rate_multiplier": self.slow_learning_rate_multiplier,
            }
        )
        return config
