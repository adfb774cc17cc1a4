import keras

from contract import schema as S
from model.losses import binary_crossentropy, calibration_penalty, uncertainty_weighted_sum
from model.position_bias import PositionBias


@keras.saving.register_keras_serializable(package="mlpr")
class MultiTaskLoss(keras.layers.Layer):
    """Carries the multi-task loss inside the model graph: its settings and the trainable
    log sigma_k of the uncertainty weighting (the paper's eq. 10).

    It passes the task predictions through unchanged; `MultiTaskRanker.compute_loss` calls
    `total()`. Keeping the weights and settings in a layer makes them part of the saved model.

    Args:
        tasks: task names in funnel order (the keys of labels and predictions).
        uncertainty_weighting: weight task losses by learned uncertainty (else a plain sum).
        calibration_weight: weight of AITM's calibration penalty (0 disables it).
        position_buckets: learn the examination probability of each logged position
            (model/position_bias.py, that many buckets) and train every task's prediction
            times it against the labels; 0 disables it. The labels then carry the logged
            `position` beside the tasks; batches without it train as if disabled.

    Example:
    >>> layer = MultiTaskLoss(tasks=("click", "atc"))
    >>> y = {"click": keras.ops.ones((2, 1)), "atc": keras.ops.zeros((2, 1))}
    >>> p = {"click": keras.ops.full((2, 1), 0.5), "atc": keras.ops.full((2, 1), 0.5)}
    >>> layer([p["click"], p["atc"]])  # builds the layer
    >>> round(float(layer.total(y, p)), 4)  # 0.5 * (ln 2 + ln 2)
    0.6931
    """

    def __init__(
        self,
        tasks,
        uncertainty_weighting=True,
        calibration_weight=0.0,
        position_buckets=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tasks = tuple(tasks)
        if not self.tasks:
            raise ValueError("`tasks` must name at least one task")
        if calibration_weight < 0:
            raise ValueError(f"`calibration_weight` must be >= 0, got {calibration_weight}")
        self.uncertainty_weighting = bool(uncertainty_weighting)
        self.calibration_weight = float(calibration_weight)
        if int(position_buckets) < 0:
            raise ValueError(f"`position_buckets` must be >= 0, got {position_buckets}")
        self.position_buckets = int(position_buckets)
        self.position_bias = (
            PositionBias(self.position_buckets, name="position_bias")
            if self.position_buckets
            else None
        )

    def build(self, input_shape):
        if self.position_bias is not None:
            self.position_bias.build((None, 1))
        self.log_sigma = self.add_weight(
            shape=(len(self.tasks),),
            initializer="zeros",
            trainable=self.uncertainty_weighting,
            name="log_sigma",
        )

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def total(self, y_true: dict, y_pred: dict):
        observed = y_pred
        if self.position_bias is not None and S.POSITION in y_true:
            examined = self.position_bias(y_true[S.POSITION])
            observed = {t: examined * y_pred[t] for t in self.tasks}
        losses = [binary_crossentropy(y_true[t], observed[t]) for t in self.tasks]
        if self.uncertainty_weighting:
            total = uncertainty_weighted_sum(losses, self.log_sigma)
        else:
            total = sum(losses[1:], losses[0])
        if self.calibration_weight:
            total = total + self.calibration_weight * calibration_penalty(
                [y_pred[t] for t in self.tasks]
            )
        return total

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tasks": list(self.tasks),
                "uncertainty_weighting": self.uncertainty_weighting,
                "calibration_weight": self.calibration_weight,
                "position_buckets": self.position_buckets,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mlpr")
class MultiTaskRanker(keras.Model):
    """A functional multi-task model whose loss is its `MultiTaskLoss` layer's `total()`.

    Build it like a functional model, `MultiTaskRanker(inputs=..., outputs=...)`, with a
    `MultiTaskLoss` layer in the graph (directly or inside a sub-model, such as the ranker's
    scorer). Compile without a loss.
    """

    LOSS_LAYER = "multitask_loss"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = loss_layer(self).total(y, y_pred)
        if self.losses:
            total = total + sum(self.losses)
        return total / replicas_in_sync()


def replicas_in_sync() -> int:
    """How many replicas each compute a share of the global batch: the number of devices of
    the enclosing `tf.distribute` strategy (1 outside one, and on other backends).

    A replica's loss is its share's mean divided by this number, so that the gradients the
    strategy sums over replicas are those of the global batch's mean, as on one device. Keras
    scales its own compiled losses the same way; `compute_loss` here replaces them."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def loss_layer(model: keras.Model) -> MultiTaskLoss:
    """The `MultiTaskLoss` layer of `model`, searched through its nested sub-models."""
    pending = list(model.layers)
    while pending:
        layer = pending.pop(0)
        if isinstance(layer, MultiTaskLoss):
            return layer
        if isinstance(layer, keras.Model):
            pending.extend(layer.layers)
    raise ValueError(f"model {model.name!r} has no MultiTaskLoss layer")
