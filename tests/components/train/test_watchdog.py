"""The hung-worker watchdog (components/train/watchdog.py) on its own: the heartbeat a process
writes, and what the chief's watchdog concludes from the files of a cluster, by a clock the
test moves (the real processes: test_multiworker_recovery.py)."""

import json
import threading
import time

import pytest

from components.train import watchdog as W
from components.train.config import TrainConfig

TASKS = {"chief 0": "10.0.0.5:2222", "worker 0": "job-node-0-0.job:2222"}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _write(directory, task, beat, position, phase=W.TRAINING, last="", pid=7):
    state = {
        "task": task,
        "address": TASKS[task],
        "host": f"host-{task[0]}",
        "pid": pid,
        "beat": beat,
        "position": position,
        "phase": phase,
        "last": last or f"began train step {position}",
    }
    with open(W.heartbeat_file(str(directory), task), "w") as fh:
        json.dump(state, fh)


def _watchdog(directory, clock, hang=10.0) -> W.Watchdog:
    def fail(reason):
        raise AssertionError(f"check() does not call on_hang: {reason}")

    return W.Watchdog(str(directory), TASKS, hang, fail, clock=clock)


def test_the_bound_is_the_timeout_and_two_intervals():
    assert W.interval_for(120) == 5.0 and W.interval_for(16) == 2.0 and W.interval_for(1) == 0.5
    with pytest.raises(ValueError, match="hang_seconds must be positive, got 0"):
        W.Watchdog("d", TASKS, 0, print)
    with pytest.raises(ValueError, match="hang_seconds must be positive"):
        TrainConfig(hang_seconds=-1)


def test_the_heartbeat_beats_on_its_own_and_moves_with_the_loop(tmp_path):
    heartbeat = W.Heartbeat(str(tmp_path), "worker 0", TASKS["worker 0"], interval=0.02)
    path = W.heartbeat_file(str(tmp_path), "worker 0")
    assert path == str(tmp_path / "worker-0.json")

    def read() -> dict:
        with open(path) as fh:
            return json.load(fh)

    heartbeat.start()
    try:
        first = read()
        assert (first["phase"], first["position"], first["address"]) == (
            W.STARTING,
            0,
            "job-node-0-0.job:2222",
        )
        deadline = time.monotonic() + 10
        while read()["beat"] < first["beat"] + 3:  # no loop event needed
            assert time.monotonic() < deadline
            time.sleep(0.01)
        heartbeat.on_train_begin()
        heartbeat.on_epoch_begin(0)
        heartbeat.on_train_batch_begin(0)
        assert heartbeat.state()["phase"] == W.STARTING  # the first step builds its graph
        heartbeat.on_train_batch_end(0)
        heartbeat.on_test_batch_begin(0)
        state = heartbeat.state()
        assert (state["position"], state["phase"]) == (5, W.TRAINING)
        assert state["last"] == "began eval step 1 of epoch 1"
        heartbeat.on_epoch_end(0)
        heartbeat.on_train_end()
        assert heartbeat.state()["phase"] == W.DONE
    finally:
        heartbeat.stop()


def test_a_heartbeat_whose_folder_is_removed_writes_nothing(tmp_path):
    folder = tmp_path / "backup" / W.HEARTBEATS
    heartbeat = W.Heartbeat(str(folder), "worker 0", "b:1", interval=0.02).start()
    try:
        (folder / "worker-0.json").unlink()
        folder.rmdir()  # the chief removed the backup while this process still beats
        time.sleep(0.2)
        assert not folder.exists()  # not made again
    finally:
        heartbeat.stop()


def test_a_frozen_process_is_named_once_silent_for_the_timeout(tmp_path):
    clock = Clock()
    dog = _watchdog(tmp_path, clock)
    for beat in range(1, 4):  # both beat and train
        _write(tmp_path, "chief 0", beat, beat)
        _write(tmp_path, "worker 0", beat, beat)
        assert dog.check() is None
        clock.now += 4
    for beat in range(4, 6):  # the worker is frozen: its file no longer changes
        _write(tmp_path, "chief 0", beat, 3)  # the chief waits for it, alive
        assert dog.check() is None
        clock.now += 4
    _write(tmp_path, "chief 0", 6, 3)
    reason = dog.check()  # 12 s since the worker's last beat
    assert reason.startswith(
        "worker 0 (job-node-0-0.job:2222, host host-w, pid 7) has sent no heartbeat for 12 s "
        "(its last: began train step 3): the process is frozen"
    ), reason


def test_a_process_that_never_wrote_is_named_with_the_folder(tmp_path):
    clock = Clock()
    dog = _watchdog(tmp_path, clock)
    _write(tmp_path, "chief 0", 1, 0, W.STARTING)
    assert dog.check() is None
    clock.now += 11
    _write(tmp_path, "chief 0", 2, 0, W.STARTING)
    reason = dog.check()
    assert reason.startswith(
        f"worker 0 (job-node-0-0.job:2222) has written no heartbeat into {tmp_path} for 11 s"
    ), reason


def test_an_earlier_attempts_file_counts_as_silent_until_its_task_writes_again(tmp_path):
    _write(tmp_path, "worker 0", 57, 300, pid=40)  # left by a process that is gone
    clock = Clock()
    dog = _watchdog(tmp_path, clock)
    _write(tmp_path, "chief 0", 1, 0, W.STARTING)
    assert dog.check() is None
    clock.now += 8
    _write(tmp_path, "worker 0", 1, 0, W.STARTING, pid=41)  # the new process starts
    _write(tmp_path, "chief 0", 2, 0, W.STARTING)
    assert dog.check() is None
    clock.now += 8  # 16 s after the watchdog started, 8 s after the worker's first beat
    _write(tmp_path, "chief 0", 3, 0, W.STARTING)
    assert dog.check() is None


def test_the_start_is_not_timed_and_finished_processes_may_go(tmp_path):
    clock = Clock()
    dog = _watchdog(tmp_path, clock)
    for beat in range(1, 8):  # a long start: beating, not moving
        _write(tmp_path, "chief 0", beat, 2, W.TRAINING)
        _write(tmp_path, "worker 0", beat, 1, W.STARTING, last="began train step 1 of epoch 1")
        assert dog.check() is None
        clock.now += 4
    _write(tmp_path, "chief 0", 8, 9, W.DONE)
    _write(tmp_path, "worker 0", 8, 9, W.DONE)
    assert dog.check() is None
    clock.now += 30  # both ended (the worker's process has exited): nothing to judge
    assert dog.check() is None


def test_no_progress_names_the_process_behind_the_others(tmp_path):
    clock = Clock()
    dog = _watchdog(tmp_path, clock)
    _write(tmp_path, "chief 0", 1, 18, last="began epoch 2")
    _write(tmp_path, "worker 0", 1, 17, last="finished epoch 1")
    assert dog.check() is None
    for beat in range(2, 5):  # alive, and still
        clock.now += 4
        _write(tmp_path, "chief 0", beat, 18, last="began epoch 2")
        _write(tmp_path, "worker 0", beat, 17, last="finished epoch 1")
        found = dog.check()
        assert (found is None) == (beat < 4), found
    assert found == (
        "no training progress for 12 s: worker 0 (job-node-0-0.job:2222, host host-w, pid 7): "
        "finished epoch 1, while the others wait for it in a collective (chief 0: began epoch "
        "2); it is alive but stuck (an input pipeline, the shared volume, a callback)"
    )


def test_no_progress_at_the_same_point_lists_every_process(tmp_path):
    clock = Clock()
    dog = _watchdog(tmp_path, clock)
    for beat in range(1, 5):
        _write(tmp_path, "chief 0", beat, 20)
        _write(tmp_path, "worker 0", beat, 20)
        found = dog.check()
        clock.now += 4
    assert found.startswith("no training progress for 12 s on any process, every one alive")
    assert "chief 0 (10.0.0.5:2222, host host-c, pid 7): began train step 20" in found
    assert "worker 0 (job-node-0-0.job:2222, host host-w, pid 7): began train step 20" in found


def test_the_thread_calls_on_hang_once_within_the_bound(tmp_path):
    tasks = {"chief 0": "a:1", "worker 0": "b:1"}
    beats = {t: W.Heartbeat(str(tmp_path), t, a, interval=0.05).start() for t, a in tasks.items()}
    hung, reasons = threading.Event(), []

    def on_hang(reason):
        reasons.append(reason)
        hung.set()

    dog = W.Watchdog(str(tmp_path), tasks, hang_seconds=0.5, on_hang=on_hang, interval=0.05)
    dog.start()
    try:
        time.sleep(0.3)
        assert not hung.is_set()
        beats["worker 0"].stop()  # its process frozen: no more beats
        stopped = time.monotonic()
        assert hung.wait(10)
        assert time.monotonic() - stopped <= 0.5 + 2 * 0.05 + 0.5  # + 0.5: a busy machine
    finally:
        dog.stop()
        beats["chief 0"].stop()
    assert len(reasons) == 1 and reasons[0].startswith("worker 0 (b:1, host ")
