import keras
from keras import ops

from contract import schema as S
from model.loss_balancing import (
    BALANCING,
    gradnorm_gradient,
    renormalised,
    weighted_sum,
)
from model.losses import (
    binary_crossentropy,
    calibration_penalty,
    listwise_softmax_crossentropy,
    uncertainty_weighted_sum,
)
from model.position_bias import PositionBias

# The label key that carries each example's list (its query) for listwise tasks.
LIST_ID = "list_id"


@keras.saving.register_keras_serializable(package="mlpr")
class MultiTaskLoss(keras.layers.Layer):
    """Carries the multi-task loss inside the model graph: its settings and the weights of its
    loss balancing (model/loss_balancing.py): the trainable log sigma_k of the uncertainty
    weighting (the paper's eq. 10), or the task weights of GradNorm and Dynamic Weight Average.

    It passes the task predictions through unchanged; `MultiTaskRanker.compute_loss` calls
    `total()`. Keeping the weights and settings in a layer makes them part of the saved model.

    Args:
        tasks: task names in funnel order (the keys of labels and predictions), then any
            tasks outside the funnel (see `funnel_size`).
        balancing: how the task losses are weighted into one: "uncertainty", "gradnorm",
            "dwa" or "fixed" (model/loss_balancing.py). GradNorm's weights learn in the training
            loop (components/train/loop.py), DWA's at each epoch's end (its callback); trained
            by `Model.fit`, both keep their weights of 1.
        task_weights: the constant weight of each task for "fixed" (default: 1 each).
        gradnorm_alpha: GradNorm's asymmetry alpha (0: equal gradient norms for every task).
        dwa_temperature: Dynamic Weight Average's temperature T (larger: weights closer to 1).
        calibration_weight: weight of AITM's calibration penalty (0 disables it).
        position_buckets: learn the examination probability of each logged position
            (model/position_bias.py, that many buckets) and train every task's prediction
            times it against the labels; 0 disables it. The labels then carry the logged
            `position` beside the tasks; batches without it train as if disabled.
        funnel_size: how many of `tasks`, from the first, are funnel stages (None: all); the
            rest (e.g. an engagement relevance label, already position-debiased) are weighted
            like the others but take no part in the calibration penalty or the examination.
        listwise_tasks: tasks trained with the listwise softmax loss over each query's
            products (model/losses.listwise_softmax_crossentropy) instead of the pointwise
            binary cross-entropy; their labels then carry LIST_ID, each example's query.

    Examples:
        >>> layer = MultiTaskLoss(tasks=("click", "atc"))  # uncertainty, log sigma = 0 at first
        >>> y = {"click": keras.ops.ones((2, 1)), "atc": keras.ops.zeros((2, 1))}
        >>> p = {"click": keras.ops.full((2, 1), 0.5), "atc": keras.ops.full((2, 1), 0.5)}
        >>> layer([p["click"], p["atc"]])  # builds the layer
        >>> round(float(layer.total(y, p)), 4)  # 0.5 * (ln 2 + ln 2)
        0.6931
    """

    def __init__(
        self,
        tasks,
        balancing="uncertainty",
        task_weights=None,
        gradnorm_alpha=1.5,
        dwa_temperature=2.0,
        calibration_weight=0.0,
        position_buckets=0,
        uncertainty_weighting=None,
        funnel_size=None,
        listwise_tasks=(),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tasks = tuple(tasks)
        if not self.tasks:
            raise ValueError("`tasks` must name at least one task")
        self.listwise_tasks = tuple(listwise_tasks or ())
        unknown = [t for t in self.listwise_tasks if t not in self.tasks]
        if unknown:
            raise ValueError(f"`listwise_tasks` {unknown} are not tasks of {self.tasks}")
        self.funnel_size = len(self.tasks) if funnel_size is None else int(funnel_size)
        if not 1 <= self.funnel_size <= len(self.tasks):
            raise ValueError(
                f"`funnel_size` must be between 1 and the {len(self.tasks)} tasks, got {funnel_size}"
            )
        self.funnel = self.tasks[: self.funnel_size]
        if calibration_weight < 0:
            raise ValueError(f"`calibration_weight` must be >= 0, got {calibration_weight}")
        if uncertainty_weighting is not None:  # the setting of models saved before `balancing`
            balancing = "uncertainty" if uncertainty_weighting else "fixed"
        if balancing not in BALANCING:
            raise ValueError(f"`balancing` must be one of {BALANCING}, got {balancing!r}")
        self.balancing = balancing
        weights = tuple(float(w) for w in task_weights) if task_weights else None
        if weights is not None and (len(weights) != len(self.tasks) or min(weights) < 0):
            raise ValueError(
                f"`task_weights` needs one non-negative weight per task {self.tasks}, got {weights}"
            )
        if weights is not None and balancing != "fixed":
            raise ValueError(f"`task_weights` are for balancing 'fixed', not {balancing!r}")
        self.fixed_weights = weights or (1.0,) * len(self.tasks)
        if gradnorm_alpha < 0 or dwa_temperature <= 0:
            raise ValueError(
                f"`gradnorm_alpha` must be >= 0 and `dwa_temperature` > 0, got {gradnorm_alpha} "
                f"and {dwa_temperature}"
            )
        self.gradnorm_alpha = float(gradnorm_alpha)
        self.dwa_temperature = float(dwa_temperature)
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
            trainable=self.balancing == "uncertainty",
            name="log_sigma",
        )
        if self.balancing in ("gradnorm", "dwa"):
            # Set by the training loop or the DWA callback, never by the model's optimizer.
            self.task_weights = self.add_weight(
                shape=(len(self.tasks),),
                initializer="ones",
                trainable=False,
                aggregation="mean",
                name="task_weights",
            )
        if self.balancing == "gradnorm":
            self.initial_losses = self.add_weight(
                shape=(len(self.tasks),),
                initializer="zeros",
                trainable=False,
                aggregation="mean",
                name="initial_losses",
            )

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def task_losses(self, y_true: dict, y_pred: dict) -> list:
        """Each task's loss, in task order: its mean binary cross-entropy (times the
        examination probability of the logged position when position-bias-aware), or for the
        listwise tasks the softmax loss over each query's examples in the batch."""
        observed = y_pred
        if self.position_bias is not None and S.POSITION in y_true:
            examined = self.position_bias(y_true[S.POSITION])
            observed = {**y_pred, **{t: examined * y_pred[t] for t in self.funnel}}
        if self.listwise_tasks and LIST_ID not in y_true:
            raise ValueError(
                f"the listwise tasks {list(self.listwise_tasks)} need each example's query "
                f"under {LIST_ID!r} in the labels"
            )
        return [
            listwise_softmax_crossentropy(y_true[t], observed[t], y_true[LIST_ID])
            if t in self.listwise_tasks
            else binary_crossentropy(y_true[t], observed[t])
            for t in self.tasks
        ]

    @property
    def weights_now(self):
        """The task weights of "fixed", "dwa" and "gradnorm" as they stand."""
        if self.balancing == "fixed":
            return self.fixed_weights
        return self.task_weights

    def total(self, y_true: dict, y_pred: dict):
        losses = self.task_losses(y_true, y_pred)
        if self.balancing == "uncertainty":
            total = uncertainty_weighted_sum(losses, self.log_sigma)
        else:
            total = weighted_sum(losses, self.weights_now)
        if self.calibration_weight:
            total = total + self.calibration_weight * calibration_penalty(
                [y_pred[t] for t in self.funnel]
            )
        return total

    def gradnorm_step(self, losses, norms, optimizer, replicas: int = 1) -> None:
        """One GradNorm update of the task weights (model/loss_balancing.py) from this step's
        task losses and the norms g_k of their gradients on the shared weights, with
        `optimizer` (its own, not the model's); the first call records L_k(0). `replicas`: the
        replicas whose gradients the optimizer sums (each gives its share of the mean)."""
        losses = ops.stop_gradient(ops.stack(losses))
        norms = ops.stop_gradient(ops.stack(norms))
        initial = ops.where(self.initial_losses > 0.0, self.initial_losses, losses)
        self.initial_losses.assign(initial)
        gradient = gradnorm_gradient(self.task_weights, norms, losses, initial, self.gradnorm_alpha)
        optimizer.apply_gradients([(gradient / replicas, self.task_weights)])
        self.task_weights.assign(renormalised(self.task_weights))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tasks": list(self.tasks),
                "balancing": self.balancing,
                "task_weights": list(self.fixed_weights) if self.balancing == "fixed" else None,
                "gradnorm_alpha": self.gradnorm_alpha,
                "dwa_temperature": self.dwa_temperature,
                "calibration_weight": self.calibration_weight,
                "position_buckets": self.position_buckets,
                "funnel_size": self.funnel_size,
                "listwise_tasks": list(self.listwise_tasks),
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
