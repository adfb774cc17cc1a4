"""Multi-worker training that survives a lost or hung worker, with two worker processes on
127.0.0.1 running the train command line as a multi-node train step runs it
(components/train/multiworker.py), sharing a backup folder:

- a worker SIGKILLed after epoch 2: the chief fails; started again (as the train step restarts
  its cluster), both processes resume after epoch 2 from the chief's backup and end with the
  weights and history of a run never interrupted, to the bit;
- a worker frozen (SIGSTOP): the chief fails within the bound, naming it;
- a worker alive but stuck (its loop waits for ever): the chief's watchdog fails it within
  `hang_seconds` plus two heartbeat intervals, naming it, with exit status 75.

Every process has a timeout and is killed in a `finally`."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile

import h5py
import numpy as np
import pytest

from components.train.backup import EpochBackup
from components.train.multiworker import INDEX_ENV
from components.train.watchdog import HANG_EXIT, HEARTBEATS, interval_for
from conftest import synthetic_splits, transformed_dataset
from contract import layout
from contract import schema as S

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
STALLING_CLI = os.path.join(os.path.dirname(__file__), "stalling_cli.py")
EPOCHS = 4
# The hang tests' watchdog: a process silent, or no progress, for this long fails the chief.
HANG_SECONDS = 30.0
BOUND = HANG_SECONDS + 2 * interval_for(HANG_SECONDS)
# How long a process may take to start and reach the point a test waits for (the machine may
# be shared and slow).
START_TIMEOUT = 300


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recovery")
    transformed_dataset(root, synthetic_splits(384, 64, 64), S.DEMO_SCHEMA)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A chief and a worker running the train command line; `start()` launches both (again,
    with the same addresses, as a restarted cluster); logs under `root`."""

    def __init__(self, data, root, backup, max_epochs=EPOCHS, hang_seconds=120.0):
        self.root, self.backup = root, backup
        self.addresses = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
        self.arguments = [
            "--transform-dir", str(data / "tft"), "--transformed-dir", str(data / "tx"),
            "--model-dir", str(root / "model"), "--encoder-preset", "tiny",
            "--batch-size", "32", "--learning-rate", "0.005", "--max-epochs", str(max_epochs),
            "--precision", "float32", "--backup-dir", str(backup),
            "--hang-seconds", str(hang_seconds),
            "--chief-address", self.addresses[0], "--worker-addresses", self.addresses[1],
        ]  # fmt: skip
        self.processes: list[subprocess.Popen] = []
        self.launches = 0

    def start(self, worker_command: list[str] | None = None) -> None:
        self.launches += 1
        self.processes = []
        for role in ("chief", "worker"):
            command = [sys.executable, "-m", "components.train"]
            if role == "worker" and worker_command:
                command = [sys.executable, *worker_command]
            with open(self.log(role), "w") as log:  # the child keeps its own handle
                self.processes.append(
                    subprocess.Popen(
                        [*command, *self.arguments, "--task-type", role],
                        cwd=REPO,
                        env={**os.environ, "PYTHONPATH": REPO, INDEX_ENV: "0"},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def log(self, role: str) -> str:
        return str(self.root / f"{role}-{self.launches}.log")

    def output(self, role: str) -> str:
        with open(self.log(role)) as fh:
            return fh.read()

    @property
    def chief(self) -> subprocess.Popen:
        return self.processes[0]

    @property
    def worker(self) -> subprocess.Popen:
        return self.processes[1]

    def wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not condition():
            for role, process in zip(("chief", "worker"), self.processes, strict=True):
                assert process.poll() is None, f"{role} ended: " + self.output(role)[-3000:]
            assert time.monotonic() < deadline, f"no {what} in {START_TIMEOUT} s"
            time.sleep(0.2)

    def wait_for_epoch(self, epoch: int) -> None:
        """Until the chief's backup holds `epoch` (1-based): the next one is under way."""
        backup = EpochBackup(str(self.backup))

        def saved() -> bool:
            try:  # read while the chief may swap a new backup in
                last = backup.last_epoch()
            except (OSError, ValueError):
                return False
            return last is not None and last + 1 >= epoch

        self.wait_for(saved, f"backup of epoch {epoch}")

    def finish(self) -> list[int]:
        return [p.wait(timeout=START_TIMEOUT) for p in self.processes]

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()  # SIGKILL ends a stopped process too
                process.wait(timeout=60)


def _weights(model_dir) -> dict[str, np.ndarray]:
    """Every array of a saved model.keras, by its path in the weights file."""
    arrays = {}

    def keep(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    with (
        zipfile.ZipFile(model_dir / layout.KERAS_MODEL_FILE) as archive,
        archive.open("model.weights.h5") as raw,
        h5py.File(raw, "r") as weights,
    ):
        weights.visititems(keep)
    return arrays


def _train_info(model_dir) -> dict:
    return json.loads((model_dir / layout.TRAIN_INFO_FILE).read_text())


@pytest.mark.large  # three two-process runs: about 6.5 minutes on two shared cores
def test_a_killed_worker_restarts_and_every_process_resumes_from_the_chiefs_backup(data, tmp_path):
    reference = Cluster(data, tmp_path / "reference", tmp_path / "reference-backup")
    interrupted = Cluster(data, tmp_path / "interrupted", tmp_path / "backup")
    for cluster in (reference, interrupted):
        cluster.root.mkdir()
    try:
        reference.start()
        assert reference.finish() == [0, 0], reference.output("chief")[-3000:]

        interrupted.start()
        interrupted.wait_for_epoch(2)
        interrupted.worker.kill()
        codes = interrupted.finish()
        assert codes[0] == 1, interrupted.output("chief")[-3000:]  # a peer lost: it failed
        last = interrupted.output("chief").strip().splitlines()[-1]
        assert last.startswith("training failed on") and "UnavailableError" in last, last
        assert EpochBackup(str(interrupted.backup)).last_epoch() == 1  # epoch 2's, kept

        interrupted.start()  # the same cluster, again: both resume from the chief's backup
        assert interrupted.finish() == [0, 0], interrupted.output("chief")[-3000:]
    finally:
        reference.kill()
        interrupted.kill()
    for role in ("chief", "worker"):
        assert f"resuming after epoch 2 of {EPOCHS} from the backup" in interrupted.output(role)
    resumed, whole = _train_info(interrupted.root / "model"), _train_info(reference.root / "model")
    assert resumed["result"]["epochs_run"] == whole["result"]["epochs_run"] == EPOCHS
    assert resumed["result"]["history"] == whole["result"]["history"]
    ours, theirs = _weights(interrupted.root / "model"), _weights(reference.root / "model")
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)
    # The chief removed the backup (and the heartbeats in it) once the model was written.
    assert not interrupted.backup.exists()


def _stopped_since(cluster: Cluster, act) -> float:
    """Seconds from `act()` (done on the worker) to the chief's exit."""
    began = time.monotonic()
    act()
    cluster.chief.wait(timeout=BOUND + 60)
    return time.monotonic() - began


def test_a_frozen_worker_fails_the_chief_within_the_bound_naming_it(data, tmp_path):
    cluster = Cluster(data, tmp_path, tmp_path / "backup", max_epochs=50, hang_seconds=HANG_SECONDS)
    try:
        cluster.start()
        cluster.wait_for_epoch(1)  # epoch 2 under way
        seconds = _stopped_since(cluster, lambda: os.kill(cluster.worker.pid, signal.SIGSTOP))
        code = cluster.chief.returncode
    finally:
        cluster.kill()
    output = cluster.output("chief")
    last = output.strip().splitlines()[-1]
    print(f"SIGSTOP to the chief's exit: {seconds:.1f} s; {last}")
    assert code != 0, output[-3000:]
    assert seconds <= BOUND, (seconds, last)
    assert last.startswith("training failed on"), last
    # TensorFlow's coordination service or the watchdog: either names the worker's address.
    assert f"worker 0 ({cluster.addresses[1]}" in last, last
    assert not (tmp_path / "model" / layout.KERAS_MODEL_FILE).exists()


@pytest.mark.large  # the default suite freezes a worker above; this one the watchdog alone sees
def test_a_stuck_worker_fails_the_chief_through_the_watchdog_naming_it(data, tmp_path):
    cluster = Cluster(data, tmp_path, tmp_path / "backup", max_epochs=50, hang_seconds=HANG_SECONDS)
    heartbeat = tmp_path / "backup" / HEARTBEATS / "worker-0.json"

    def stuck() -> bool:  # the worker finished epoch 1; it stalls as epoch 2 begins
        try:
            return json.loads(heartbeat.read_text())["last"] == "finished epoch 1"
        except (OSError, ValueError):
            return False

    try:
        cluster.start(worker_command=[STALLING_CLI, "2"])
        cluster.wait_for(stuck, "stalled worker")
        began = time.monotonic()
        code = cluster.chief.wait(timeout=BOUND + 60)
        seconds = time.monotonic() - began
        assert cluster.worker.poll() is None  # alive: TensorFlow saw nothing wrong
    finally:
        cluster.kill()
    output = cluster.output("chief")
    last = output.strip().splitlines()[-1]
    print(f"stall to the chief's exit: {seconds:.1f} s; {last}")
    assert code == HANG_EXIT, output[-3000:]
    assert seconds <= BOUND + 1, (seconds, last)  # + 1: the stall is seen 0.2 s late at most
    assert last.startswith("training failed on") and "no training progress" in last, last
    assert f"worker 0 ({cluster.addresses[1]}" in last and "finished epoch 1" in last, last
    assert "chief 0: began epoch 2" in last, last
