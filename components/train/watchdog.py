"""Hung-worker detection for multi-worker training: every process writes a heartbeat file, the
chief watches them all and fails the job, naming the process, when training stops moving.

MultiWorkerMirroredStrategy trains in lockstep: every step ends with collectives that wait
for every process. TensorFlow's coordination service already fails them all when a process
stops sending its own heartbeats (frozen, killed, its node gone: "The following tasks are
unhealthy (stopped sending heartbeats)", 7 to 10 s after the process stopped, measured in
tests/components/train/test_multiworker_recovery.py). What it cannot see is a process that
is alive and makes no progress: an input pipeline that blocks, a GPU kernel or collective that
never returns, a read from a hung volume. The others then wait in their next collective for
ever, and there is no collective timeout to end it (distribute.py: TensorFlow leaks a thread
per timed collective).

So each process of a multi-worker run with a backup directory keeps a file in
`<backup_dir>/heartbeats/<task>.json` (`Heartbeat`): its task, cluster address, host and pid;
`beat`, raised by a thread of its own every `interval` seconds (it is alive); `position`,
raised as its training loop begins and ends each step (train and eval) and epoch, and what it
did last; `phase`, "starting" until its first train step has ended (reading the splits,
encoding texts, building the model, tracing the step's graph), then "training", then "done". The chief's `Watchdog` thread reads them all every `interval` seconds
and, by its own clock (no clock is compared across nodes), fails the job when

- a process's `beat` has not changed for `hang_seconds`: it is frozen, or its node or the
  shared volume is unreachable; it is named;
- every process is training and no `position` has changed for `hang_seconds`: the processes
  furthest behind are named (a process stuck outside a step, or in a step's input, never
  begins the step the others wait in). When every process stopped at the same point, the step
  itself never ends, and each is listed with where it stopped.

The bound: the job fails at most `hang_seconds + 2 * interval` after the last progress (the
beat that carries it is written within `interval`, the watchdog reads it within `interval`).
The start is not timed (its length depends on the data, the text cache and the model; the
TrainJob's deadline bounds it). A file left by an earlier attempt is harmless: it
counts as silent until its task's new process writes it, which all do as they start.

On a shared volume that caches file attributes (NFS: up to 60 s by default), `hang_seconds`
must be longer than that delay, or a process would look silent while it beats.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import keras

HEARTBEATS = "heartbeats"  # the folder under the backup directory
# The exit status of a process the watchdog ends: sysexits' EX_TEMPFAIL, a temporary failure
# that a restart may clear.
HANG_EXIT = 75
STARTING, TRAINING, DONE = "starting", "training", "done"


def interval_for(hang_seconds: float) -> float:
    """How often heartbeats are written and read: an eighth of `hang_seconds`, within
    [0.5, 5] seconds (120 s: every 5 s, so a hang ends the job within 130 s)."""
    return min(5.0, max(0.5, hang_seconds / 8))


def task_name(task_type: str, index: int) -> str:
    return f"{task_type} {index}"


def heartbeat_file(directory: str, task: str) -> str:
    """The heartbeat file of `task` ("worker 1": worker-1.json) in `directory`."""
    return os.path.join(directory, task.replace(" ", "-") + ".json")


class Heartbeat(keras.callbacks.Callback):
    """This process's heartbeat file in `directory`, written every `interval` seconds from
    `start()` to `stop()`; as a callback of the training loop it records the loop's position.

    Args:
        directory: the heartbeat folder, shared by every process of the cluster.
        task: this process's task ("chief 0", "worker 1").
        address: its host:port in the cluster.
        interval: seconds between writes.
    """

    def __init__(self, directory: str, task: str, address: str, interval: float):
        super().__init__()
        self.directory, self.interval = directory, interval
        self.path = heartbeat_file(directory, task)
        self._state = {
            "task": task,
            "address": address,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "beat": 0,
            "position": 0,
            "phase": STARTING,
            "last": "started",
        }
        self._epoch = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        os.makedirs(self.directory, exist_ok=True)
        self._write()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def state(self) -> dict:
        with self._lock:
            return dict(self._state)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self._write()

    def _write(self) -> None:
        with self._lock:
            self._state["beat"] += 1
            text = json.dumps(self._state)
        # A whole file or none: a reader never sees half of one.
        staging = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(staging, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(staging, self.path)
        except OSError:  # the folder is gone (the chief removed the backup): nothing to tell
            pass

    def _moved(self, what: str, phase: str | None = None) -> None:
        with self._lock:
            self._state["position"] += 1
            self._state["last"] = what
            if phase:
                self._state["phase"] = phase

    # The training loop's events (loop.fit), in the order every process meets them.

    def on_train_begin(self, logs=None):
        self._moved("began training")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._moved(f"began epoch {self._epoch}")

    def on_train_batch_begin(self, batch, logs=None):
        self._moved(f"began train step {batch + 1} of epoch {self._epoch}")

    def on_train_batch_end(self, batch, logs=None):
        # The first step also builds its graph: the start ends with it.
        self._moved(f"finished train step {batch + 1} of epoch {self._epoch}", TRAINING)

    def on_test_batch_begin(self, batch, logs=None):
        self._moved(f"began eval step {batch + 1} of epoch {self._epoch}")

    def on_test_batch_end(self, batch, logs=None):
        self._moved(f"finished eval step {batch + 1} of epoch {self._epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self._moved(f"finished epoch {epoch + 1}")

    def on_train_end(self, logs=None):
        self._moved("finished training", DONE)


def describe(task: str, address: str, state: dict | None) -> str:
    """'worker 1 (10.0.0.7:2222, host h, pid 12)' for messages."""
    where = [address] if address else []
    if state:
        where += [f"host {state.get('host')}", f"pid {state.get('pid')}"]
    return f"{task} ({', '.join(where)})" if where else task


class Watchdog:
    """Reads the heartbeat files of `tasks` (task -> cluster address) in `directory` every
    `interval` seconds from a thread and calls `on_hang(reason)` once when a process is
    silent or training stopped moving for `hang_seconds` (see the module docstring).
    `clock`: seconds, monotonic (tests pass their own)."""

    def __init__(
        self,
        directory: str,
        tasks: Mapping[str, str],
        hang_seconds: float,
        on_hang: Callable[[str], None],
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if hang_seconds <= 0:
            raise ValueError(f"hang_seconds must be positive, got {hang_seconds}")
        self.directory, self.tasks, self.hang_seconds = directory, dict(tasks), hang_seconds
        self.interval = interval if interval is not None else interval_for(hang_seconds)
        self._on_hang, self._clock = on_hang, clock
        started = clock()
        self._seen: dict[str, dict | None] = {t: None for t in self.tasks}
        self._beat_at = {t: started for t in self.tasks}  # when its beat last changed
        self._moved_at = started  # when any position or phase last changed
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _read(self, task: str) -> dict | None:
        try:
            with open(heartbeat_file(self.directory, task), encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def check(self) -> str | None:
        """Reads every file once; the reason to fail the job, or None."""
        now = self._clock()
        for task in self.tasks:
            state = self._read(task)
            if state is None:  # not written yet (or unreadable this once): no news
                continue
            before = self._seen[task]
            if before is None or state["beat"] != before["beat"] or state["pid"] != before["pid"]:
                self._beat_at[task] = now
            if before is None or (state["position"], state["phase"]) != (
                before["position"],
                before["phase"],
            ):
                self._moved_at = now
            self._seen[task] = state
        for task, address in self.tasks.items():
            state = self._seen[task]
            if state is not None and state["phase"] == DONE:  # it has finished: it may exit
                continue
            silent = now - self._beat_at[task]
            if silent > self.hang_seconds:
                what = (
                    f"has written no heartbeat into {self.directory} for {silent:.0f} s"
                    if state is None
                    else f"has sent no heartbeat for {silent:.0f} s (its last: {state['last']})"
                )
                return (
                    f"{describe(task, address, state)} {what}: the process is frozen, or its "
                    "node or the shared volume is unreachable"
                )
        states = self._seen
        training = all(s is not None and s["phase"] != STARTING for s in states.values())
        if not training or all(s["phase"] == DONE for s in states.values()):
            return None
        still = now - self._moved_at
        if still <= self.hang_seconds:
            return None
        lowest = min(s["position"] for s in states.values())
        behind = [t for t, s in states.items() if s["position"] == lowest]
        where = "; ".join(
            f"{describe(t, self.tasks[t], states[t])}: {states[t]['last']}" for t in behind
        )
        if len(behind) < len(states):
            others = "; ".join(
                f"{t}: {s['last']}" for t, s in states.items() if s["position"] != lowest
            )
            return (
                f"no training progress for {still:.0f} s: {where}, while the others wait for "
                f"it in a collective ({others}); it is alive but stuck (an input pipeline, the "
                "shared volume, a callback)"
            )
        return (
            f"no training progress for {still:.0f} s on any process, every one alive and "
            f"stopped at the same point ({where}): a step that never ends (an input pipeline, "
            "a GPU kernel or a collective)"
        )

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            reason = self.check()
            if reason is not None:
                self._on_hang(reason)
                return
