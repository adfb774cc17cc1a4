"""How the task losses are weighted into one: the math of each `loss_balancing` choice, in
plain functions (keras.ops, any backend), and Dynamic Weight Average's epoch callback.

- "uncertainty": the paper's eq. 10, learned homoscedastic uncertainty per task (Kendall et
  al., CVPR 2018); `model.losses.uncertainty_weighted_sum`.
- "fixed": sum_k w_k L_k with constant weights (1 each unless given).
- "dwa": Dynamic Weight Average (Liu et al., CVPR 2019, MTAN): after two epochs at weight 1,
  w_k(t) = K exp(r_k / T) / sum_i exp(r_i / T) with r_k = L_k(t-1) / L_k(t-2), the ratio of
  the task's mean training loss over the last two epochs: a task whose loss stopped falling
  gets more weight. `dwa_weights`, applied by `DynamicWeightAverage` at each epoch's end.
- "gradnorm": GradNorm (Chen et al., ICML 2018): the weights learn, at every step, to give each
  task a gradient norm on the shared weights W proportional to its relative inverse training
  rate. With G_k = ||grad_W w_k L_k|| = w_k g_k, r_k = (L_k / L_k(0)) / mean_i(L_i / L_i(0))
  and the target mean(G) r_k^alpha held constant, the weights descend
  L_grad = sum_k |G_k - target_k|, whose gradient is sign(G_k - target_k) g_k
  (`gradnorm_gradient`); after each step they are renormalised to sum to K
  (`renormalised`). The step is the training loop's (components/train/loop.py), which
  computes g_k on the ranker's text projections, the weights every task shares in every
  architecture.
"""

from __future__ import annotations

import keras
from keras import ops

BALANCING = ("uncertainty", "gradnorm", "dwa", "fixed")
# The smallest weight GradNorm may give a task (before renormalising): a task is never dropped.
MIN_WEIGHT = 1e-3


def weighted_sum(task_losses, weights):
    """sum_k w_k L_k; `weights` a vector (or sequence) as long as `task_losses`."""
    total = 0.0
    for k, loss in enumerate(task_losses):
        total = total + weights[k] * loss
    return total


def dwa_weights(last, before, temperature: float = 2.0):
    """Dynamic Weight Average's weights for the next epoch from the tasks' mean losses of the
    last two epochs (`last` = epoch t-1, `before` = epoch t-2): K softmax(r / T), r = last/before.
    """
    last = ops.convert_to_tensor(last, "float32")
    before = ops.convert_to_tensor(before, "float32")
    ratios = last / ops.maximum(before, 1e-12)
    return ops.cast(ops.shape(last)[0], "float32") * ops.softmax(ratios / temperature)


def gradnorm_gradient(weights, norms, losses, initial_losses, alpha: float = 1.5):
    """The gradient of GradNorm's L_grad = sum_k |w_k g_k - mean(w g) r_k^alpha| with respect to
    the weights w, the target held constant: sign(w_k g_k - target_k) g_k.

    Args:
        weights: the task weights w_k.
        norms: g_k, the norm of the gradient of the unweighted task loss L_k on the shared weights.
        losses: L_k at this step; initial_losses: L_k(0), at the first step.
        alpha: how strongly tasks that train slower are pulled up (0: equal gradient norms).
    """
    weights = ops.convert_to_tensor(weights, "float32")
    norms = ops.convert_to_tensor(norms, "float32")
    ratios = ops.convert_to_tensor(losses, "float32") / ops.maximum(
        ops.convert_to_tensor(initial_losses, "float32"), 1e-12
    )
    relative = ratios / ops.maximum(ops.mean(ratios), 1e-12)
    weighted = weights * norms
    target = ops.mean(weighted) * relative**alpha
    return ops.sign(weighted - target) * norms


def renormalised(weights):
    """The weights, each at least `MIN_WEIGHT`, scaled to sum to their number K."""
    weights = ops.maximum(ops.convert_to_tensor(weights, "float32"), MIN_WEIGHT)
    return weights * ops.cast(ops.shape(weights)[0], "float32") / ops.sum(weights)


class DynamicWeightAverage(keras.callbacks.Callback):
    """Sets the loss layer's task weights at each epoch's end from the epoch's per-task mean
    training losses (`<task>_loss` in the logs, as components/train/loop.py logs them): 1 for
    the first two epochs, then `dwa_weights` of the last two.

    Args:
        layer: the model's `MultiTaskLoss` (balancing "dwa").
    """

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.history: list[list[float]] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        missing = [t for t in self.layer.tasks if f"{t}_loss" not in logs]
        if missing:
            raise ValueError(
                f"Dynamic Weight Average needs each task's training loss in the epoch's logs; "
                f"missing {[f'{t}_loss' for t in missing]}"
            )
        self.history.append([float(logs[f"{t}_loss"]) for t in self.layer.tasks])
        if len(self.history) >= 2:
            weights = dwa_weights(self.history[-1], self.history[-2], self.layer.dwa_temperature)
            self.layer.task_weights.assign(weights)

    def backup_state(self) -> tuple[dict, list]:
        """Its loss history, for a resumed run (components/train/backup.py); the weights
        themselves are the loss layer's variables."""
        return {"history": self.history}, []

    def restore_state(self, state: dict, arrays: list) -> None:
        self.history = [list(map(float, row)) for row in state["history"]]
