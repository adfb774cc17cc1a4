"""Training progress for the step's log and the local run's live view, as `progress:` lines
(components/step_log.py): the epoch and its step while it runs, then each epoch's losses and
an estimate of the time left."""

from __future__ import annotations

import time

import keras

from components.step_log import progress


class ProgressLines(keras.callbacks.Callback):
    """`epoch k/n`, then `epoch k/n step s/m` at most every `every` seconds, and at each
    epoch's end its loss, validation loss and the time the remaining epochs would take at
    the mean epoch time so far (an upper bound: early stopping may end sooner)."""

    def __init__(self, epochs: int, steps_per_epoch: int, every: float = 15.0):
        super().__init__()
        self.epochs, self.steps, self.every = epochs, steps_per_epoch, every
        self._began = self._last = 0.0
        self._epoch_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._began = self._last = time.monotonic()
        progress(f"epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            progress(f"epoch {self._epoch + 1}/{self.epochs} step {batch + 1}/{self.steps}")

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_seconds.append(time.monotonic() - self._began)
        logs = logs or {}
        left = self.epochs - epoch - 1
        eta = sum(self._epoch_seconds) / len(self._epoch_seconds) * left
        losses = ", ".join(f"{k} {logs[k]:.4f}" for k in ("loss", "val_loss") if k in logs)
        progress(
            f"epoch {epoch + 1}/{self.epochs} done in {self._epoch_seconds[-1]:.0f} s: {losses}"
            + (f"; at most {eta:.0f} s left" if left else "")
        )

    @property
    def _epoch(self) -> int:
        return len(self._epoch_seconds)
