"""A local Beam job's SDK worker process: `python -m components.beam_worker`.

`components.beam_runner.make_pipeline` starts one per worker when a local job runs on several
processes. It is Beam's own SDK worker (`apache_beam.runners.worker.sdk_worker_main`, the one
Beam's `multi_processing` mode starts), which also ends with the process that runs the job.
Beam's worker alone may outlive it: with the job's process SIGKILLed mid-ingest, Beam's
workers went on for 10 to 20 seconds here (tests/components/test_beam_worker.py kills a job
so). So, as a step of a local run does (`components.lifeline`), the worker follows the
processes named in RUNNER_PIDS_ENV, which `beam_runner.worker_command` sets to the job's
process and whatever that process follows, and stops within about a second of one of them
ending.
"""

from __future__ import annotations

import logging
import sys

from components.lifeline import RUNNER_PIDS_ENV, follow_runner


class _NoMainSession(logging.Filter):
    """Beam's worker warns at its start that it finds no saved main session: a local job
    saves none (the functions it runs travel pickled), so the warning, relayed into the
    step's log once per worker, says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No semi_persistent_directory found")


def main() -> None:
    """Follow the job's processes, then serve Beam's runner until it is done."""
    logging.getLogger("apache_beam.runners.worker.sdk_worker_main").addFilter(_NoMainSession())
    if follow_runner() is None:
        raise SystemExit(
            f"{RUNNER_PIDS_ENV} names no process to follow: this worker is started by "
            "components.beam_runner.make_pipeline"
        )
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
