"""A local run's steps end with the run: no step process trains on after its runner is gone.

kfp.local starts each step as `sh -c '... python -m kfp.dsl.executor_main ...'` under the
orchestrator (local/execute.py), itself under the runner the user started
(local/run_pipeline.py). Killing the runner (SIGKILL, a closed terminal, an out-of-memory
kill) does not reach its children: the orchestrator and the running step would go on, the
step still training and writing into the run's artifacts. A parent-death signal
(prctl PR_SET_PDEATHSIG) cannot help, since a step's parent is the `sh` that kfp.local
starts, which outlives the runner too.

So the runner names itself in RUNNER_PIDS_ENV, the orchestrator adds itself, and every
process of the run (the orchestrator and each step) follows them: a daemon thread checks
every `interval` seconds that each is still alive and, when one is gone, ends its own process
with SIGTERM. On Kubeflow the variable is unset and nothing runs: a pod ends with its
container.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Mapping

# Comma-separated process ids this process of a local run lives no longer than.
RUNNER_PIDS_ENV = "MLPR_LOCAL_RUNNER_PIDS"
INTERVAL_SECONDS = 1.0


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, dead but not yet collected, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no procfs: os.kill said it exists
    return state not in ("Z", "X")


def followed(environ: Mapping[str, str] = os.environ) -> list[int]:
    """The process ids in RUNNER_PIDS_ENV (none outside a local run)."""
    value = environ.get(RUNNER_PIDS_ENV, "")
    return [int(p) for p in value.split(",") if p.strip().isdigit()]


def follow_runner(
    environ: Mapping[str, str] = os.environ, interval: float = INTERVAL_SECONDS
) -> threading.Thread | None:
    """End this process (SIGTERM) within `interval` seconds of any process of
    RUNNER_PIDS_ENV ending; returns the watching thread, or None outside a local run."""
    pids = followed(environ)
    if not pids:
        return None

    def watch() -> None:
        while True:
            time.sleep(interval)
            gone = [pid for pid in pids if not alive(pid)]
            if gone:
                print(
                    f"the local run's process {gone[0]} is gone: stopping this one ({os.getpid()})",
                    file=sys.stderr,
                    flush=True,
                )
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="local-run-lifeline", daemon=True)
    thread.start()
    return thread


def with_this_process(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with this process added to RUNNER_PIDS_ENV, for the processes it starts."""
    pids = [*followed(environ), os.getpid()]
    return {**environ, RUNNER_PIDS_ENV: ",".join(str(p) for p in pids)}
