"""The epoch a ranker keeps is chosen for ranking: the eval split's NDCG@k, before any training
too.

The loss a ranker trains on (uncertainty-weighted, over per-impression rates) is not what it
is judged on: the evaluate step and its gate read NDCG@5 of each task within each query. So
the train step scores the eval split's queries after every epoch (`val_ndcg@5`, the tasks'
mean, and `val_<task>_ndcg@5`), keeps the weights of the best one, stops when it has not
improved for `patience` epochs, and restores the best at the end. The untrained model is
scored first, as epoch 0: with the encoder's prior (model/encoder_prior.py) it ranks as the
encoder's zero-shot cosine, so when no epoch ranks the eval queries better, the train step
keeps the untrained model rather than one that ranks worse.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from components.evaluate.metrics import ndcg_per_query


class RankingSelection(keras.callbacks.Callback):
    """Early stopping and best-epoch selection on the eval split's NDCG@k.

    Args:
        eval_inputs: the eval split's model inputs, in batches, in the order of `query`.
        query: each eval example's query (its grouping), [n].
        labels: each task's 0/1 label per eval example, [n] (evaluation's labels).
        tasks: the tasks whose NDCG@k is averaged; `task`: "" for all of them, or one task.
        k: the cut-off.
        patience: epochs without improvement before training stops.
        checkpoint: where the best weights are also written (a `.weights.h5` path), or None.
    """

    def __init__(
        self,
        eval_inputs: tf.data.Dataset,
        query: np.ndarray,
        labels: Mapping[str, np.ndarray],
        tasks: Sequence[str],
        task: str = "",
        k: int = 5,
        patience: int = 2,
        checkpoint: str | None = None,
    ):
        super().__init__()
        if task and task not in tasks:
            raise ValueError(f"the selection task {task!r} is not one of the tasks {list(tasks)}")
        self.eval_inputs = eval_inputs
        self.query = np.asarray(query)
        self.labels = {t: np.asarray(labels[t]) for t in tasks}
        self.tasks = tuple(tasks)
        self.task = task
        self.k = int(k)
        self.patience = int(patience)
        self.checkpoint = checkpoint
        self.monitor = f"val_ndcg@{self.k}"
        self.best = -np.inf
        self.best_epoch = 0
        self.initial: dict[str, float] = {}
        self._best_weights = None
        self._wait = 0
        self._predict = None

    def score(self) -> dict[str, float]:
        """NDCG@k of each task over the eval queries with a positive label, and their mean
        (or the selection task's value) under `monitor`."""
        predicted: dict[str, list] = {t: [] for t in self.tasks}
        if self._predict is None:  # traced once (and once more for a shorter last batch)
            self._predict = tf.function(
                lambda x: self.model(x, training=False), reduce_retracing=True
            )
        for x in self.eval_inputs:
            out = self._predict(x)
            for t in self.tasks:
                predicted[t].append(np.asarray(out[t], dtype=np.float64).reshape(-1))
        values = {}
        for t in self.tasks:
            scores = np.concatenate(predicted[t])
            if not np.all(np.isfinite(scores)):
                values[f"val_{t}_ndcg@{self.k}"] = float("nan")
                continue
            per_query = ndcg_per_query(self.query, self.labels[t], scores, self.k)
            values[f"val_{t}_ndcg@{self.k}"] = (
                float(np.mean(list(per_query.values()))) if per_query else float("nan")
            )
        chosen = [
            values[f"val_{t}_ndcg@{self.k}"] for t in ((self.task,) if self.task else self.tasks)
        ]
        values[self.monitor] = float(np.mean(chosen))
        return values

    def _keep(self, value: float, epoch: int) -> None:
        self.best, self.best_epoch, self._wait = value, epoch, 0
        self._best_weights = self.model.get_weights()
        if self.checkpoint:
            self.model.save_weights(self.checkpoint)

    def on_train_begin(self, logs=None):
        self.initial = self.score()
        value = self.initial[self.monitor]
        self._keep(value if np.isfinite(value) else -np.inf, 0)

    def on_epoch_end(self, epoch, logs=None):
        values = self.score()
        if logs is not None:
            logs.update(values)
        value = values[self.monitor]
        if np.isfinite(value) and value > self.best:
            self._keep(value, epoch + 1)
            return
        self._wait += 1
        if self._wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)
        if self.best_epoch == 0:
            logging.warning(
                "no epoch ranked the eval split better than the untrained model (%s %.4f): "
                "kept the untrained weights",
                self.monitor,
                self.best,
            )

    def backup_state(self) -> tuple[dict, list]:
        """Its state across epochs, for a resumed run (components/train/backup.py)."""
        state = {
            "best": float(self.best),
            "best_epoch": self.best_epoch,
            "wait": self._wait,
            "initial": self.initial,
        }
        return state, list(self._best_weights or [])

    def restore_state(self, state: dict, arrays: list) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self._wait, self.initial = int(state["wait"]), dict(state["initial"])
        self._best_weights = list(arrays) if arrays else None
        if self.checkpoint and self._best_weights is not None:
            # on_train_begin wrote the fresh model's weights there: write the best again.
            current = self.model.get_weights()
            self.model.set_weights(self._best_weights)
            self.model.save_weights(self.checkpoint)
            self.model.set_weights(current)

    def summary(self) -> dict:
        """What was selected, for train_info.json."""
        return {
            "metric": self.monitor,
            "task": self.task or "mean of the tasks",
            "best_epoch": self.best_epoch,
            "best": float(self.best),
            "untrained": {k: float(v) for k, v in self.initial.items()},
        }
