"""The multi-task loss math, in plain functions (keras.ops, any backend)."""

from keras import ops


def uncertainty_weighted_sum(task_losses, log_sigma):
    """The paper's eq. 10: sum_k 1/(2 sigma_k^2) L_k + log sigma_k, with s_k = log sigma_k.

    `task_losses` is a list of scalars, `log_sigma` a vector of the same length.
    """
    total = 0.0
    for k, loss in enumerate(task_losses):
        s = log_sigma[k]
        total = total + 0.5 * ops.exp(-2.0 * s) * loss + s
    return total


def calibration_penalty(probabilities):
    """AITM's behavioural expectation calibrator: sum_k mean(max(y_k - y_{k-1}, 0)).

    Penalises a deeper funnel stage predicted more likely than the stage before it.
    """
    total = 0.0
    for previous, current in zip(probabilities[:-1], probabilities[1:], strict=True):
        total = total + _mean(ops.relu(current - previous))
    return total


def _mean(x):
    """The mean of `x`, 0 for no elements: a replica can get an empty share of a last,
    partial batch, and its loss must not be NaN."""
    return ops.sum(x) / ops.maximum(ops.cast(ops.size(x), x.dtype), 1.0)


def binary_crossentropy(y_true, y_pred, epsilon=1e-7):
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1); 0 for none."""
    y_true = ops.cast(y_true, y_pred.dtype)
    p = ops.clip(y_pred, epsilon, 1.0 - epsilon)
    return -_mean(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
