"""A local Beam job on several workers (components/beam_runner.py, components/beam_worker.py):
each worker is a process of its own, and none outlives the process that runs the job, even
when that process is killed mid-job (SIGKILL) while they are busy."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
from process_testlib import children_of, wait_until

from components.beam_runner import make_pipeline
from components.ingest import demo_data
from components.lifeline import RUNNER_PIDS_ENV, alive

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# The functions a worker runs travel pickled; a lambda goes by value (a function of this
# module would go by reference, and a worker cannot import a test module).
def test_two_workers_are_two_processes_other_than_this_one():
    here = os.getpid()
    with make_pipeline([], workers=2) as pipeline:
        pids = (
            pipeline
            | beam.Create(list(range(8)))
            | beam.Reshuffle()
            | beam.Map(lambda _: os.getpid())
            | beam.combiners.ToList()
            | beam.Map(lambda found: (len(set(found)), here in found))
        )
        assert_that(pids, equal_to([(2, False)]))


def test_one_worker_runs_in_this_process():
    with make_pipeline(["--direct_num_workers=1"], workers=2) as pipeline:
        pids = (
            pipeline
            | beam.Create(list(range(4)))
            | beam.Reshuffle()
            | beam.Map(lambda _: os.getpid())
        )
        assert_that(pids | beam.Distinct(), equal_to([os.getpid()]))


def _workers_of(pid: int) -> list[int]:
    return children_of(pid, b"components.beam_worker")


JOB = textwrap.dedent(
    """
    import sys
    from components.ingest.job import run_ingest
    from contract import schema as S
    run_ingest(sys.argv[1], sys.argv[2], S.DEMO_SCHEMA, beam_args=["--direct_num_workers=2"])
    """
)


def test_workers_end_within_seconds_of_a_killed_job(tmp_path):
    """An ingest job over two files on two workers is SIGKILLed while they read: both end
    within a few seconds (Beam's own multi_processing workers went on for 10-20 s here, to
    the end of the bundle they were reading)."""
    log = demo_data.generate(900, seed=5)
    half = len(log) // 2
    demo_data.write(log.iloc[:half], tmp_path / "a.csv")
    demo_data.write(log.iloc[half:], tmp_path / "b.csv")
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop(RUNNER_PIDS_ENV, None)
    job = subprocess.Popen(
        [sys.executable, "-c", JOB, str(tmp_path / "*.csv"), str(tmp_path / "out")],
        env=env,
        cwd=ROOT,
    )
    workers: list[int] = []
    try:
        assert wait_until(lambda: len(_workers_of(job.pid)) == 2, 120), "no workers started"
        workers = _workers_of(job.pid)
        time.sleep(1.5)  # the workers are up and reading
        assert job.poll() is None, "the job ended before it could be killed"
        job.send_signal(signal.SIGKILL)
        job.wait()
        started = time.monotonic()
        assert wait_until(lambda: not any(alive(w) for w in workers), 5), (
            "a worker outlived its job"
        )
        assert time.monotonic() - started < 3.0
    finally:
        if job.poll() is None:
            job.kill()
        for worker in workers:
            if alive(worker):
                os.kill(worker, signal.SIGKILL)


def test_a_worker_without_a_job_to_follow_stops():
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop(RUNNER_PIDS_ENV, None)
    done = subprocess.run(
        [sys.executable, "-m", "components.beam_worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert f"{RUNNER_PIDS_ENV} names no process to follow" in done.stderr
