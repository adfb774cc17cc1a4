"""The training loop: epochs of steps under a `tf.distribute` strategy, driven through Keras
callbacks (history, progress bar, early stopping, checkpoints).

Keras 3's `Model.fit` does not run under `MultiWorkerMirroredStrategy`: its symbolic build
reduces the dict of input tensors in one call, which the collective strategy rejects
(keras-team/keras#20329), and it reduces the per-step scalar logs along an axis they do not
have (keras-team/keras#20585). So training runs this loop on every placement: one device,
mirrored GPUs and many workers run the same code. It is built from public parts only: the
strategy's `run` and distributed datasets, the model's `compute_loss`, the optimizer's
`apply_gradients` (which sums gradients over replicas), Keras metrics (their variables sum
over replicas when read) and a `keras.callbacks.CallbackList`.

Logged names are those `fit` logs for the ranker, `loss` and `<task>_auc`, and each task's
own loss `<task>_loss` (unweighted), with `val_` before each for the eval split. Losses are
per-example means over the whole split, AUCs are over the whole split (not averages of
per-replica or per-batch values).

Loss balancing (model/loss_balancing.py) "gradnorm" adds its weight update to each train step:
the norms of the task losses' gradients on the ranker's text projections (the weights every
task shares in every architecture), then one step of its own Adam on the task weights, at the
model's learning rate.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from components.step_log import progress
from components.train.backup import EpochBackup
from model.multitask_loss import loss_layer
from model.ranker import PRODUCT_PROJECTION, QUERY_PROJECTION


class _Tracked:
    """The loss, per-task losses and per-task AUCs of one pass, created in the strategy's
    scope."""

    def __init__(self, tasks):
        self.loss = keras.metrics.Mean(name="loss")
        self.task_losses = {t: keras.metrics.Mean(name=f"{t}_loss") for t in tasks}
        self.aucs = {t: keras.metrics.AUC(name=f"{t}_auc") for t in tasks}

    def update(self, loss, task_losses, y, y_pred, replicas: int):
        examples = tf.shape(y[next(iter(self.aucs))])[0]
        # The replica's loss is its share divided by the replicas (for the gradient sum);
        # the tracked value is the share's own mean, weighted by its examples.
        self.loss.update_state(loss * replicas, sample_weight=examples)
        for (task, mean), value in zip(self.task_losses.items(), task_losses, strict=True):
            mean.update_state(value, sample_weight=examples)
            self.aucs[task].update_state(y[task], y_pred[task])

    def _metrics(self) -> dict:
        return {
            "loss": self.loss,
            **{f"{t}_loss": m for t, m in self.task_losses.items()},
            **{f"{t}_auc": m for t, m in self.aucs.items()},
        }

    def reset(self):
        for metric in self._metrics().values():
            metric.reset_state()

    def results(self) -> dict[str, float]:
        # Read outside `strategy.run`: each value sums over every replica and worker.
        return {name: float(m.result()) for name, m in self._metrics().items()}


def shared_variables(model: keras.Model) -> list:
    """The kernels of the ranker's query and product projections in `model` (the ranker or
    its `cached_ranker`): where GradNorm measures each task's gradient norm."""
    found, pending = {}, list(model.layers)
    while pending:
        layer = pending.pop(0)
        if layer.name in (QUERY_PROJECTION, PRODUCT_PROJECTION):
            found[layer.name] = layer.kernel
        if isinstance(layer, keras.Model):
            pending.extend(layer.layers)
    if not found:
        raise ValueError(f"model {model.name!r} has no text projection for GradNorm to measure")
    return [found[name] for name in sorted(found)]


def _gather(strategy: tf.distribute.Strategy, values: list[int]) -> np.ndarray:
    """`values` of every replica, one row each (a collective: every process calls it)."""
    local = tf.constant([values], tf.int64)
    return strategy.gather(strategy.run(lambda: tf.identity(local)), axis=0).numpy()


def _agreed_epoch(strategy: tf.distribute.Strategy, backup: EpochBackup) -> int | None:
    """The last epoch of the backup every process restores (None: none). Across workers the
    backup is the chief's, on a volume they share: each reads it only after every process
    has reached this point (the chief cleaned the folder before), and they check that they
    found the same epoch, or all would train on from different states."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return backup.last_epoch()
    _gather(strategy, [0])  # a barrier
    epoch = backup.last_epoch()
    found = sorted({int(e) for e in _gather(strategy, [-1 if epoch is None else epoch])[:, 0]})
    if len(found) > 1:
        named = ", ".join("none" if e < 0 else f"epoch {e + 1}" for e in found)
        raise RuntimeError(
            f"the workers found different backups in {backup.path} ({named}): the volume "
            "does not show every process the chief's last backup; start the job again"
        )
    return epoch


def fit(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    train_ds: tf.data.Dataset,
    eval_ds: tf.data.Dataset,
    *,
    strategy: tf.distribute.Strategy,
    epochs: int,
    steps_per_epoch: int,
    eval_steps: int,
    callbacks: list[keras.callbacks.Callback],
    verbose: int = 2,
    backup: EpochBackup | None = None,
    write_backup: bool = True,
) -> dict[str, list[float]]:
    """Train `model` (built in `strategy`'s scope) on `train_ds`, which holds every epoch's
    batches one after the other (`inputs.shuffled_epochs`), `steps_per_epoch` at a time, and
    evaluate on `eval_ds` (`eval_steps` batches) after each epoch. Batches are global: the
    strategy splits each over its replicas. `callbacks` see what `fit` would show them,
    and may stop training (`model.stop_training`). Returns the history, as `fit` does.

    With `backup` (backup.py), the whole training state is written there after every epoch
    (by this process when `write_backup`: the chief), and a backup found there at the start
    is restored: training goes on at the epoch after the one it saved, as if never stopped.
    Under MultiWorkerMirroredStrategy every worker restores the chief's backup (on a volume
    they share), the same epoch on each, and only the chief writes it.

    Callbacks see the batches of the eval split too (`on_test_batch_begin` / `_end`, as
    `fit` shows them its validation), so a heartbeat (watchdog.py) moves while it runs."""
    replicas = strategy.num_replicas_in_sync
    balancer = loss_layer(model)
    tasks = balancer.tasks
    gradnorm = balancer.balancing == "gradnorm"
    shared = shared_variables(model) if gradnorm else []
    with strategy.scope():
        optimizer.build(model.trainable_variables)
        train_metrics, eval_metrics = _Tracked(tasks), _Tracked(tasks)
        if gradnorm:
            weight_optimizer = keras.optimizers.Adam(
                learning_rate=float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            )
            weight_optimizer.build([balancer.task_weights])

    def train_step(x, y):
        with tf.GradientTape(persistent=gradnorm) as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
            scaled = optimizer.scale_loss(loss)  # mixed_float16: a loss-scale optimizer
            task_losses = balancer.task_losses(y, y_pred)
        gradients = tape.gradient(scaled, model.trainable_variables)
        if gradnorm:
            norms = [tf.linalg.global_norm(tape.gradient(t, shared)) for t in task_losses]
            balancer.gradnorm_step(task_losses, norms, weight_optimizer, replicas)
        del tape
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        train_metrics.update(loss, task_losses, y, y_pred, replicas)

    def eval_step(x, y):
        y_pred = model(x, training=False)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
        eval_metrics.update(loss, balancer.task_losses(y, y_pred), y, y_pred, replicas)

    @tf.function
    def train_on(iterator):
        strategy.run(train_step, args=next(iterator))

    @tf.function
    def eval_on(iterator):
        strategy.run(eval_step, args=next(iterator))

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        [*callbacks, history],
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    # Every variable whose value carries over from one epoch to the next, in a fixed order.
    variables = [
        *model.variables,
        *optimizer.variables,
        *(weight_optimizer.variables if gradnorm else []),
    ]
    start, logs = 0, {}
    if backup is not None and _agreed_epoch(strategy, backup) is not None:
        state = backup.restore(variables, callbacks)
        start = state["epoch"] + 1
        history.history = {name: list(values) for name, values in state["history"].items()}
        history.epoch = list(range(start))
        model.stop_training = bool(state["stopped"])
        progress(f"resuming after epoch {start} of {epochs} from the backup in {backup.path}")
    # Each epoch's batches follow the last one's: skip the epochs already trained.
    batches = iter(strategy.experimental_distribute_dataset(train_ds.skip(start * steps_per_epoch)))
    for epoch in range(start, epochs):
        if model.stop_training:  # resumed from a backup written as training stopped
            break
        callback_list.on_epoch_begin(epoch)
        train_metrics.reset()
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            train_on(batches)
            callback_list.on_train_batch_end(step)
        logs = train_metrics.results()
        eval_metrics.reset()
        eval_batches = iter(strategy.experimental_distribute_dataset(eval_ds))
        callback_list.on_test_begin()  # as `fit` calls its `evaluate`
        for step in range(eval_steps):
            callback_list.on_test_batch_begin(step)
            eval_on(eval_batches)
            callback_list.on_test_batch_end(step)
        evaluated = eval_metrics.results()
        callback_list.on_test_end(evaluated)
        logs.update({f"val_{name}": value for name, value in evaluated.items()})
        callback_list.on_epoch_end(epoch, logs)
        if backup is not None and write_backup:
            backup.save(epoch, variables, history.history, callbacks, model.stop_training)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return history.history
