"""Resumable training: the whole training state written at every epoch's end, read back when a
step starts again after it was killed (a preempted pod, a retried task, a local run killed).

What Keras' `BackupAndRestore` does for `Model.fit`, for the training loop (loop.py), and more
completely, so that a resumed run gives the same model as one never interrupted (bit for bit
on CPU, where the ops are deterministic; tests/components/train/test_backup.py):

- every variable of the trained model, the seed generators' states included (dropout draws on
  from where it was), and every variable of the optimizers (step count, moments);
- the epoch finished and the history so far;
- the state of each callback that keeps one across epochs (`backup_state` / `restore_state`:
  the ranking selection's best epoch, best weights and patience, Dynamic Weight Average's
  loss history), and of Keras' `EarlyStopping` and `ModelCheckpoint` through their public
  attributes;
- the shuffle position: each epoch's order comes from a seed of its own
  (inputs.shuffled_epochs), so the loop skips the finished epochs' batches.

A backup is written to a new folder and renamed into place, so a kill while writing leaves the
previous one whole; a write that fails (a full volume) removes the new folder. The train step
removes it once the model is exported. With several workers it lives on a volume they all
share: only the chief writes it, and every worker restores it (loop.fit checks that they all
found the same epoch).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence

import keras
import numpy as np

from components import disk_faults

STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"
# The backup folder of a run, inside the folder the train step gives (TrainConfig.backup_dir).
CURRENT = "current"


def _callback_state(callback) -> tuple[dict, list[np.ndarray]] | None:
    """(JSON-able state, arrays) of a callback that keeps one across epochs, else None."""
    if hasattr(callback, "backup_state"):
        return callback.backup_state()
    if isinstance(callback, keras.callbacks.EarlyStopping):
        arrays = list(callback.best_weights or [])
        return {
            "wait": int(callback.wait),
            "best": float(callback.best) if callback.best is not None else None,
            "best_epoch": int(callback.best_epoch),
            "stopped_epoch": int(callback.stopped_epoch),
            "best_weights": bool(callback.best_weights),
        }, arrays
    if isinstance(callback, keras.callbacks.ModelCheckpoint):
        return {"best": float(callback.best)}, []
    return None


def _restore_callback(callback, state: dict, arrays: list[np.ndarray]) -> None:
    if hasattr(callback, "restore_state"):
        callback.restore_state(state, arrays)
    elif isinstance(callback, keras.callbacks.EarlyStopping):
        callback.wait = state["wait"]
        callback.best = state["best"]
        callback.best_epoch = state["best_epoch"]
        callback.stopped_epoch = state["stopped_epoch"]
        callback.best_weights = list(arrays) if state["best_weights"] else None
    elif isinstance(callback, keras.callbacks.ModelCheckpoint):
        callback.best = state["best"]


class EpochBackup:
    """The training state of one run under `directory`.

    Args:
        directory: where the backup lives; a retry of the same task must find it again (the
            train step puts it under its own output artifact, which a retry shares).
    """

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, CURRENT)

    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.path, STATE_FILE))

    def last_epoch(self) -> int | None:
        """The last epoch (0-based) the backup holds; None when there is none."""
        if not self.exists():
            return None
        with open(os.path.join(self.path, STATE_FILE), encoding="utf-8") as f:
            return int(json.load(f)["epoch"])

    def save(
        self,
        epoch: int,
        variables: Sequence,
        history: dict,
        callbacks: Sequence,
        stopped: bool,
    ) -> None:
        """Write the state after `epoch` (0-based) finished: `variables` (the model's and the
        optimizers', in a fixed order), the history, the callbacks' states, and whether
        training had been told to stop."""
        arrays = {f"v{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(variables)}
        states = []
        for index, callback in enumerate(callbacks):
            found = _callback_state(callback)
            if found is None:
                continue
            state, extra = found
            states.append({"index": index, "state": state, "arrays": len(extra)})
            arrays.update({f"c{index}_{i}": a for i, a in enumerate(extra)})
        state = {
            "epoch": epoch,
            "variables": len(variables),
            "history": history,
            "callbacks": states,
            "stopped": stopped,
        }
        os.makedirs(self.directory, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".backup-", dir=self.directory)
        try:
            arrays_file = os.path.join(staging, ARRAYS_FILE)
            with disk_faults.writing(arrays_file):
                np.savez(arrays_file, **arrays)
            state_file = os.path.join(staging, STATE_FILE)
            with disk_faults.writing(state_file), open(state_file, "w", encoding="utf-8") as f:
                json.dump(state, f)
        except BaseException:
            # A full or read-only volume: the previous backup stays whole, this one goes.
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # Swap it in: the old backup is moved aside first, so one whole backup always exists.
        old = None
        if os.path.isdir(self.path):
            old = tempfile.mkdtemp(prefix=".old-", dir=self.directory)
            os.replace(self.path, os.path.join(old, CURRENT))
        os.replace(staging, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def restore(self, variables: Sequence, callbacks: Sequence) -> dict:
        """Assign the saved values to `variables` and the callbacks; returns the state
        ("epoch": the last epoch finished, "history", "stopped")."""
        with open(os.path.join(self.path, STATE_FILE), encoding="utf-8") as f:
            state = json.load(f)
        if state["variables"] != len(variables):
            raise ValueError(
                f"the backup in {self.path} holds {state['variables']} variables, the model "
                f"being trained {len(variables)}: it is another model's; remove it to start over"
            )
        with np.load(os.path.join(self.path, ARRAYS_FILE)) as arrays:
            for i, variable in enumerate(variables):
                value = arrays[f"v{i}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"the backup's variable {i} has shape {value.shape}, the model's "
                        f"{variable.path} {tuple(variable.shape)}: remove {self.path} to start over"
                    )
                variable.assign(value)
            for entry in state["callbacks"]:
                index = entry["index"]
                extra = [arrays[f"c{index}_{i}"] for i in range(entry["arrays"])]
                _restore_callback(callbacks[index], entry["state"], extra)
        return state

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def clean_stale(directory: str) -> None:
    """Remove what a backup killed while writing left beside the current one."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if name.startswith((".backup-", ".old-")):
            # An ".old-" folder holds the previous backup only while the new one is swapped
            # in; if the swap was cut short, it is the only whole backup left: put it back.
            inner, current = (
                os.path.join(directory, name, CURRENT),
                os.path.join(directory, CURRENT),
            )
            if name.startswith(".old-") and os.path.isdir(inner) and not os.path.isdir(current):
                os.replace(inner, current)
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
