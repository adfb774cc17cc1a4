"""One place that turns the pipeline's Beam options into a Beam pipeline.

Without `--runner` the job runs on this machine, on Beam's FnApiRunner: the engine the
DirectRunner uses for batch jobs, named directly because DirectRunner first tries to download
the Prism runner binary, which fails on machines without internet access. It runs `workers`
SDK workers:

- one: in this process (Beam's `in_memory` mode);
- several: each in a process of its own (`components.beam_worker`, Beam's SDK worker that ends
  with this process), so the job uses several cores. FnApiRunner deals each stage's input out
  to its workers: the input files of the ingest job, the shards of the transform's splits.
  So more workers than files (or shards) have nothing to do, and each worker's start (its
  imports: a few seconds, TensorFlow's included) only pays off with enough input to share.

`local_workers` picks the number from the input's files and the machine: one per core this
process may use and no more than the machine has idle (a worker on a busy core only shares
it, and adds its start), at most one per file, one per `min_bytes` of input, and no more
than the memory available holds at `worker_bytes` each (a transform worker holds
TensorFlow: about 1 GiB). Beam's own options
choose otherwise: `--direct_num_workers=N` (0: one per core) and `--direct_running_mode`
(`in_memory`, `multi_threading`, or `multi_processing`: Beam's own worker processes, which do
not end with this one).

The functions a worker runs travel pickled: the project's own by reference (the worker has
the project first on its path), lambdas and a script's functions by value. A test's
monkeypatch does not reach a worker.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import sys
from collections.abc import Sequence

import apache_beam as beam
import joblib
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.environments import SubprocessSDKEnvironment

from components.lifeline import RUNNER_PIDS_ENV, with_this_process

WORKER_MODULE = "components.beam_worker"
# Input below this many bytes per worker runs on fewer workers (local_workers). Two workers
# cost 4-8 CPU seconds more than one for ingest and 13-18 more for transform (imports, the
# transform graph loaded in each); on idle cores each repays its share of that a few times
# over from about 32 MiB of CSV (ingest) or 64 MiB of ingested examples (transform)
# (benchmarks/results/ingest_throughput_workers.md). Those were gzip TFRecords of tf.Examples,
# about 121 bytes a row of the benchmark's log; its Parquet split takes 55, so the same rows
# are 29 MiB of the train split's Parquet files.
MIN_BYTES_PER_WORKER = 32 << 20
TRANSFORM_MIN_BYTES_PER_WORKER = 29 << 20
# What one worker may need at its peak, with room to spare (measured: an ingest worker 330
# MiB with 100,000 rows to read and 500 MiB with 500,000; a transform worker 1 GiB at any
# size; benchmarks/results/ingest_throughput_workers.md).
INGEST_WORKER_BYTES = 1 << 30
TRANSFORM_WORKER_BYTES = 1536 << 20
_CGROUP_MEMORY = (  # (limit, usage): cgroup v2, then v1
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
    ),
)
_NUM_WORKERS, _RUNNING_MODE = "direct_num_workers", "direct_running_mode"
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FN_RUNNER_LOGGER = "apache_beam.runners.portability.fn_api_runner.fn_runner"


def local_cores() -> int:
    """The cores this process may use: its CPU affinity and its container's CPU quota (cgroups),
    as joblib counts them."""
    return max(1, joblib.cpu_count())


def idle_cores() -> int:
    """The cores of the machine that no process is using: its cores less its load (the
    1-minute load average, processes running or waiting to run), both machine-wide (also in
    a container), rounded; at least 0."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average to read: count every core idle
        load = 0.0
    return max(0, math.floor((os.cpu_count() or 1) - load + 0.5))


def _read_number(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):  # absent, or "max": no limit
        return None


def local_memory() -> int:
    """The bytes of memory this process may still take: the machine's available memory
    (MemAvailable), or less when its cgroup (a container's memory limit) has less left."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    for limit_path, usage_path in _CGROUP_MEMORY:
        limit, usage = _read_number(limit_path), _read_number(usage_path)
        if limit is not None and usage is not None and limit < (1 << 60):
            left = max(limit - usage, 0)
            available = left if available is None else min(available, left)
            break
    if available is None:
        raise OSError("cannot tell the memory available: no /proc/meminfo")
    return available


def local_workers(
    file_sizes: Sequence[int],
    worker_bytes: int = INGEST_WORKER_BYTES,
    min_bytes: int = MIN_BYTES_PER_WORKER,
    cores: int | None = None,
    idle: int | None = None,
    memory: int | None = None,
) -> int:
    """How many local workers a job over files of these sizes (bytes) keeps busy: one per core
    (`cores`, by default `local_cores()`) but no more than are `idle` (`idle_cores()`), at
    most one per file (a worker reads a file whole), one per `min_bytes` of input, and as
    many as `memory` (by default `local_memory()`) holds at `worker_bytes` each; at least
    one."""
    if min_bytes < 1 or worker_bytes < 1:
        raise ValueError(
            f"min_bytes and worker_bytes must be at least 1, got {min_bytes} and {worker_bytes}"
        )
    by_input = min(len(file_sizes), sum(file_sizes) // min_bytes)
    if by_input <= 1:
        return 1
    cores = local_cores() if cores is None else cores
    idle = idle_cores() if idle is None else idle
    memory = local_memory() if memory is None else memory
    return max(1, min(by_input, cores, idle, memory // worker_bytes))


def worker_command() -> str:
    """The shell command that starts one local SDK worker: `components.beam_worker` with this
    interpreter, the project first on its path, following this process (and whatever this
    process follows) through the lifeline's variable."""
    path = os.pathsep.join(p for p in (_PROJECT_ROOT, os.environ.get("PYTHONPATH")) if p)
    follow = with_this_process(os.environ)[RUNNER_PIDS_ENV]
    return (
        f"{RUNNER_PIDS_ENV}={shlex.quote(follow)} PYTHONPATH={shlex.quote(path)} "
        f"exec {shlex.quote(sys.executable)} -m {WORKER_MODULE}"
    )


class _WorkersAreProcesses(logging.Filter):
    """FnApiRunner warns that several workers need `direct_running_mode` multi_processing or
    multi_threading to run in parallel; with the worker environment given to the runner
    (`make_pipeline`) they are processes of their own all the same, so the warning is wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("If direct_num_workers is not equal to 1")


def _given(beam_args: Sequence[str], name: str) -> bool:
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in beam_args)


def make_pipeline(beam_args: Sequence[str] = (), workers: int | None = None) -> beam.Pipeline:
    """A Beam pipeline for `beam_args` (e.g. ["--runner=DataflowRunner", "--project=..."]).

    Without `--runner` it runs locally on FnApiRunner with `workers` workers (None: one per
    core), in this process when there is one, each in a process of its own otherwise (module
    docstring); `--direct_num_workers` and `--direct_running_mode` in `beam_args` override
    that. With a runner, `workers` is not used.
    """
    beam_args = list(beam_args)
    options = PipelineOptions(beam_args)
    if options.view_as(StandardOptions).runner:
        return beam.Pipeline(options=options)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    direct = options.view_as(DirectOptions)
    if _given(beam_args, _NUM_WORKERS):
        count = direct.direct_num_workers or local_cores()  # Beam's 0: one per core
    elif _given(beam_args, _RUNNING_MODE) and direct.direct_running_mode == "in_memory":
        count = 1
    else:
        count = workers or local_cores()
    direct.direct_num_workers = count
    if count == 1 or _given(beam_args, _RUNNING_MODE):
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    fn_runner_logger = logging.getLogger(_FN_RUNNER_LOGGER)
    if not any(isinstance(f, _WorkersAreProcesses) for f in fn_runner_logger.filters):
        fn_runner_logger.addFilter(_WorkersAreProcesses())
    environment = SubprocessSDKEnvironment.from_command_string(worker_command())
    return beam.Pipeline(runner=FnApiRunner(default_environment=environment), options=options)
