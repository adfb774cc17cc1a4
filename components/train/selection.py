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

With `p_value` below 1, a better epoch must also be better by more than chance: the best
epoch's per-query NDCG@k (the tasks' mean per query) is compared with the untrained model's
by a one-sided paired t-test over the eval queries, and unless its p-value is below
`p_value` the untrained model is kept. A small log that cannot show a gain then ships the
encoder's own ranking, which the model would otherwise trade for what fits a few queries
(and which it would carry to another shop's traffic).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from components.evaluate.metrics import ndcg_per_query
from components.evaluate.stats import one_sided_p_greater, paired_comparison


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
        p_value: the best epoch replaces the untrained model only if it ranks the eval queries
            better at this one-sided paired p-value; 1.0: whatever its margin.
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
        p_value: float = 1.0,
    ):
        super().__init__()
        if task and task not in tasks:
            raise ValueError(f"the selection task {task!r} is not one of the tasks {list(tasks)}")
        if not 0.0 < p_value <= 1.0:
            raise ValueError(f"p_value must be in (0, 1], got {p_value}")
        self.eval_inputs = eval_inputs
        self.query = np.asarray(query)
        self.labels = {t: np.asarray(labels[t]) for t in tasks}
        self.tasks = tuple(tasks)
        self.task = task
        self.k = int(k)
        self.patience = int(patience)
        self.checkpoint = checkpoint
        self.p_value = float(p_value)
        self.monitor = f"val_ndcg@{self.k}"
        self.best = -np.inf
        self.best_epoch = 0
        self.initial: dict[str, float] = {}
        # Per eval query, the selected tasks' mean NDCG@k: the untrained model's and the best's.
        self._initial_per_query: dict[str, float] = {}
        self._best_per_query: dict[str, float] = {}
        self._initial_weights = None
        self._best_weights = None
        # The best trained epoch's gain over the untrained model: its one-sided p-value, and
        # why the untrained model was kept over it ("" when it was not).
        self.gain_p = math.nan
        self.kept_untrained = ""
        self._wait = 0
        self._predict = None

    def score(self) -> dict[str, float]:
        """NDCG@k of each task over the eval queries with a positive label, and their mean
        (or the selection task's value) under `monitor`."""
        return self._score()[0]

    def _score(self) -> tuple[dict[str, float], dict[str, float]]:
        """`score()`, and per eval query the mean NDCG@k of the selected tasks that have a
        positive label there."""
        predicted: dict[str, list] = {t: [] for t in self.tasks}
        if self._predict is None:  # traced once (and once more for a shorter last batch)
            self._predict = tf.function(
                lambda x: self.model(x, training=False), reduce_retracing=True
            )
        for x in self.eval_inputs:
            out = self._predict(x)
            for t in self.tasks:
                predicted[t].append(np.asarray(out[t], dtype=np.float64).reshape(-1))
        values, by_query = {}, {}
        selected = (self.task,) if self.task else self.tasks
        for t in self.tasks:
            scores = np.concatenate(predicted[t])
            if not np.all(np.isfinite(scores)):
                values[f"val_{t}_ndcg@{self.k}"] = float("nan")
                continue
            per_query = ndcg_per_query(self.query, self.labels[t], scores, self.k)
            values[f"val_{t}_ndcg@{self.k}"] = (
                float(np.mean(list(per_query.values()))) if per_query else float("nan")
            )
            if t in selected:
                for q, v in per_query.items():
                    by_query.setdefault(str(q), []).append(float(v))
        values[self.monitor] = float(np.mean([values[f"val_{t}_ndcg@{self.k}"] for t in selected]))
        return values, {q: float(np.mean(v)) for q, v in by_query.items()}

    def _keep(self, value: float, epoch: int, per_query: dict[str, float]) -> None:
        self.best, self.best_epoch, self._wait = value, epoch, 0
        self._best_per_query = per_query
        self._best_weights = self.model.get_weights()
        if self.checkpoint:
            self.model.save_weights(self.checkpoint)

    def on_train_begin(self, logs=None):
        self.initial, self._initial_per_query = self._score()
        value = self.initial[self.monitor]
        self._keep(value if np.isfinite(value) else -np.inf, 0, self._initial_per_query)
        self._initial_weights = self._best_weights

    def on_epoch_end(self, epoch, logs=None):
        values, per_query = self._score()
        if logs is not None:
            logs.update(values)
        value = values[self.monitor]
        if np.isfinite(value) and value > self.best:
            self._keep(value, epoch + 1, per_query)
            return
        self._wait += 1
        if self._wait >= self.patience:
            self.model.stop_training = True

    def gain_p_value(self) -> float:
        """One-sided paired p-value of "the best epoch ranks the eval queries better than the
        untrained model" (NaN with fewer than two queries or identical rankings)."""
        paired = paired_comparison(self._best_per_query, self._initial_per_query)
        if paired.queries >= 2 and paired.mean_difference > 0 and math.isnan(paired.p_value):
            return 0.0  # the same gain on every query: no variance, no doubt
        return one_sided_p_greater(paired)

    def on_train_end(self, logs=None):
        if self.best_epoch > 0:
            self.gain_p = p = self.gain_p_value()
            if self.p_value < 1.0 and not p < self.p_value:
                self.kept_untrained = (
                    f"epoch {self.best_epoch} ranked the eval queries better than the untrained "
                    f"model ({self.monitor} {self.best:.4f} against "
                    f"{self.initial[self.monitor]:.4f}) but not at p < {self.p_value:g} "
                    f"(one-sided paired p = {p:.3g} over {len(self._initial_per_query)} queries)"
                )
                logging.warning("%s: kept the untrained weights", self.kept_untrained)
                self.best, self.best_epoch = self.initial[self.monitor], 0
                self._best_weights = self._initial_weights
                self._best_per_query = self._initial_per_query
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)
            if self.kept_untrained and self.checkpoint:
                self.model.save_weights(self.checkpoint)  # it held the declined epoch's
        if self.best_epoch == 0 and not self.kept_untrained:
            logging.warning(
                "no epoch ranked the eval split better than the untrained model (%s %.4f): "
                "kept the untrained weights",
                self.monitor,
                self.best,
            )

    def backup_state(self) -> tuple[dict, list]:
        """Its state across epochs, for a resumed run (components/train/backup.py)."""
        best, initial = list(self._best_weights or []), list(self._initial_weights or [])
        state = {
            "best": float(self.best),
            "best_epoch": self.best_epoch,
            "wait": self._wait,
            "initial": self.initial,
            "initial_per_query": self._initial_per_query,
            "best_per_query": self._best_per_query,
            "best_arrays": len(best),
        }
        return state, best + initial

    def restore_state(self, state: dict, arrays: list) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self._wait, self.initial = int(state["wait"]), dict(state["initial"])
        self._initial_per_query = dict(state["initial_per_query"])
        self._best_per_query = dict(state["best_per_query"])
        split = int(state["best_arrays"])
        self._best_weights = list(arrays[:split]) if split else None
        self._initial_weights = list(arrays[split:]) or None
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
            "p_value": self.p_value,
            "gain_p_value": None if math.isnan(self.gain_p) else self.gain_p,
            "kept_untrained": self.kept_untrained,
        }
