"""A local run's processes end with its runner (components/lifeline.py): SIGKILL the runner
and the step it started (through `sh -c`, as kfp.local starts steps) stops within a second
or two instead of training on."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from process_testlib import children_of, wait_until

from components.lifeline import RUNNER_PIDS_ENV, alive, follow_runner, with_this_process

STEP = "from components.lifeline import follow_runner; import time; follow_runner(interval=0.2); time.sleep(60)"

RUNNER = textwrap.dedent(
    """
    import os, shlex, subprocess, sys, time
    from components.lifeline import with_this_process
    step = shlex.quote(sys.executable) + " -c " + shlex.quote(sys.argv[2])
    # As kfp.local: sh -c '...python ...', so the step's parent is the shell, not this process.
    shell = subprocess.Popen(["sh", "-c", step + "; echo shell-after-step"],
                             env=with_this_process(dict(os.environ)))
    time.sleep(60)
    """
)


def test_a_step_stops_when_its_runner_is_killed():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop(RUNNER_PIDS_ENV, None)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, "", STEP], env=env)
    try:
        assert wait_until(lambda: children_of(runner.pid), 30)
        shell = children_of(runner.pid)[0]
        assert wait_until(lambda: children_of(shell), 30)
        step = children_of(shell)[0]
        time.sleep(1.0)  # the step is up and following its runner
        assert alive(step)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        started = time.monotonic()
        assert wait_until(lambda: not alive(step), 5), "the step outlived its runner"
        assert time.monotonic() - started < 2.0
    finally:
        if runner.poll() is None:
            runner.kill()


def test_outside_a_local_run_nothing_is_followed():
    assert follow_runner({}) is None
    assert with_this_process({})[RUNNER_PIDS_ENV] == str(os.getpid())
    two = with_this_process({RUNNER_PIDS_ENV: "12,34"})
    assert two[RUNNER_PIDS_ENV] == f"12,34,{os.getpid()}"
    assert alive(os.getpid())
    finished = subprocess.Popen(["true"])
    finished.wait()
    assert not alive(finished.pid)
