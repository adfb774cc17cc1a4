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


def listwise_softmax_crossentropy(y_true, y_pred, list_ids, epsilon=1e-7):
    """TF-Ranking's softmax loss over each list (the examples of one query in the batch):
    the cross-entropy between the list's labels, normalised to sum to 1, and the softmax of
    its scores, -sum_i y_i / sum_j y_j * log softmax(s)_i, averaged over the lists with a
    positive label (a list without one carries no ranking signal); 0 for none.

    `y_pred` are probabilities, scored by their logits s = log(p / (1 - p)); `list_ids` give
    each example's list ([N] or [N, 1], equal ids: one list). Lists are found by comparing
    ids within the batch (an [N, N] mask), so they need not be contiguous.

    Examples:
        One list, labels (1, 0), logits (0, 0): log 2.

        >>> y, p = ops.convert_to_tensor([[1.0], [0.0]]), ops.convert_to_tensor([[0.5], [0.5]])
        >>> round(float(listwise_softmax_crossentropy(y, p, ops.convert_to_tensor([[7], [7]]))), 4)
        0.6931
    """
    p = ops.clip(ops.reshape(y_pred, (-1,)), epsilon, 1.0 - epsilon)
    scores = ops.log(p) - ops.log(1.0 - p)
    labels = ops.cast(ops.reshape(y_true, (-1,)), scores.dtype)
    ids = ops.reshape(list_ids, (-1,))
    same = ops.cast(ops.equal(ids[:, None], ids[None, :]), scores.dtype)  # [N, N]
    # log sum_j exp(s_j) over each example's list, stably (the list's own max subtracted).
    masked = ops.where(same > 0, scores[None, :], ops.full_like(same, -1e9))
    top = ops.max(masked, axis=1, initial=-1e9)
    log_norm = top + ops.log(ops.sum(same * ops.exp(scores[None, :] - top[:, None]), axis=1))
    label_sum = ops.sum(same * labels[None, :], axis=1)  # each example's list's label sum
    weights = ops.where(label_sum > 0, labels / ops.maximum(label_sum, epsilon), 0.0)
    list_size = ops.sum(same, axis=1)
    lists_with_positive = ops.sum(ops.where(label_sum > 0, 1.0 / list_size, 0.0))
    return ops.sum(weights * (log_norm - scores)) / ops.maximum(lists_with_positive, 1.0)
