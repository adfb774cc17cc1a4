"""Where training runs: one device, every GPU of the node, or several workers, with the same
code. `placement()` picks a `tf.distribute` strategy from what the process sees:

- `TF_CONFIG` naming a cluster of more than one task (set by Kubeflow Trainer or the
  Training Operator on each worker pod): `MultiWorkerMirroredStrategy`, collectives over
  the network, every replica holding every weight;
- otherwise more than one local GPU: `MirroredStrategy` over all of them;
- otherwise the default strategy (one device).

`TrainConfig.batch_size` is what one replica computes per step: the global batch is
`batch_size x replicas`. The learning rate scales with the square root of that factor (the
square-root rule for Adam-family optimisers: Malladi et al., "On the SDEs and Scaling Rules
for Adaptive Gradient Algorithms", NeurIPS 2022), so `batch_size=128, learning_rate=1e-3` on
4 replicas trains like `batch_size=512, learning_rate=2e-3` on one device.

Every worker trains, evaluates and exports (saving may need collectives); only the chief
writes to the output directory, the others write into a temporary directory that is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import tempfile

import tensorflow as tf

from components.train.config import PRECISIONS


@dataclasses.dataclass(frozen=True)
class Cluster:
    """This process's place in a TF_CONFIG cluster."""

    task_type: str
    task_index: int
    workers: int  # chief and workers: every task that trains
    has_chief: bool = False  # a "chief" task; without one, worker 0 is the chief
    spec: dict = dataclasses.field(default_factory=dict)  # task type -> its addresses

    @property
    def is_chief(self) -> bool:
        if self.has_chief:
            return self.task_type == "chief"
        return self.task_index == 0


def parse_tf_config(text: str | None) -> Cluster | None:
    """The cluster that a TF_CONFIG value names, or None for none (unset, empty, or one task).
    Raises ValueError naming what is wrong in a malformed value."""
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError("TF_CONFIG's 'cluster' and 'task' must be JSON objects")
    unknown = set(cluster) - {"chief", "worker", "evaluator", "ps"}
    if unknown or "ps" in cluster:
        raise ValueError(
            f"TF_CONFIG's cluster has {sorted(unknown | ({'ps'} & set(cluster)))}: "
            "training runs on 'chief' and 'worker' tasks only"
        )
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if workers <= 1:
        return None
    task_type, task_index = task.get("type"), task.get("index")
    if task_type not in ("chief", "worker") or not isinstance(task_index, int):
        raise ValueError(
            f"TF_CONFIG's task must be a 'chief' or 'worker' with an integer index, got {task}"
        )
    if not 0 <= task_index < len(cluster.get(task_type, [])):
        raise ValueError(
            f"TF_CONFIG's task {task_type} {task_index} is not in its cluster "
            f"({len(cluster.get(task_type, []))} {task_type} tasks)"
        )
    spec = {t: list(cluster[t]) for t in ("chief", "worker") if t in cluster}
    return Cluster(task_type, task_index, workers, "chief" in cluster, spec)


@dataclasses.dataclass(frozen=True)
class Placement:
    """The strategy a run trains under and this process's role in it."""

    strategy: tf.distribute.Strategy
    cluster: Cluster | None = None

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        return self.cluster is None or self.cluster.is_chief

    @property
    def workers(self) -> int:
        return 1 if self.cluster is None else self.cluster.workers

    def describe(self) -> str:
        kind = type(self.strategy).__name__
        where = "" if self.cluster is None else (
            f", {self.cluster.task_type} {self.cluster.task_index} "
            f"of {self.cluster.workers} workers"
        )  # fmt: skip
        return f"{kind}: {self.replicas} replica(s){where}"


def placement(devices: list[str] | None = None, environ=os.environ) -> Placement:
    """The strategy for this process. `devices`: the local devices to mirror over (default:
    every GPU TensorFlow sees; tests pass logical CPUs). Creates the strategy, so call it
    once per process, before other TensorFlow work when TF_CONFIG is set."""
    cluster = parse_tf_config(environ.get("TF_CONFIG"))
    if cluster is not None:
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster.spec),
            task_type=cluster.task_type,
            task_id=cluster.task_index,
            rpc_layer="grpc",
        )
        # No collective timeout: TensorFlow watches each timed collective with a thread of
        # its own that lives as long as the timeout, thousands of threads a minute here
        # (measured: 16,000 by 90 s of training, then pthread_create failed). A lost worker
        # still fails the others within seconds, through its closed connections, a frozen
        # one through the coordination service's heartbeats, and a stuck one through the
        # chief's watchdog (watchdog.py).
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        return Placement(strategy, cluster)
    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(devices) > 1:
        return Placement(tf.distribute.MirroredStrategy(devices))
    return Placement(tf.distribute.get_strategy())


def learning_rate_scale(replicas: int) -> float:
    """The factor on the learning rate when `replicas` each take a batch: sqrt(replicas)."""
    return math.sqrt(replicas)


def resolve_precision(precision: str, gpus: list | None = None) -> str:
    """The Keras dtype policy for `precision`: "auto" is mixed_bfloat16 on GPUs that compute
    in bfloat16 (compute capability 8.0 and up), mixed_float16 on older GPUs, float32 on
    CPUs. `gpus`: the physical GPUs (default: those TensorFlow sees)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if gpus is None:
        gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "float32"
    capabilities = [
        tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) for g in gpus
    ]
    return "mixed_bfloat16" if min(capabilities) >= (8, 0) else "mixed_float16"


@contextlib.contextmanager
def output_dir_for(output_dir: str, where: Placement):
    """The directory this process writes its outputs to: `output_dir` on the chief; on the
    other workers a temporary directory, removed on the way out."""
    if where.is_chief:
        yield output_dir
        return
    scratch = tempfile.mkdtemp(prefix=f"mlpr-worker-{where.cluster.task_index}-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def sharded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` sharded by data across workers: each worker keeps its share of every global
    batch, so every worker runs the same number of steps (sharding by files would give
    workers unequal shares and leave the others waiting on a collective at the end)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


_BOILERPLATE = ("Graph execution error", "Detected at node", "File ", "Additional GRPC",
                ":UNKNOWN", "The error could be", "[[", "\t", "/job:")  # fmt: skip
_TASK = re.compile(r"^/job:(\w+)/replica:\d+/task:(\d+)$")


def _task(job: str, index: int, cluster: Cluster | None) -> str:
    """'worker 1 (10.0.0.7:2222)': a task of the cluster and its address."""
    addresses = cluster.spec.get(job, []) if cluster is not None else []
    where = f" ({addresses[index]})" if index < len(addresses) else ""
    return f"{job} {index}{where}"


def failure_reason(error: BaseException, cluster: Cluster | None = None) -> str:
    """One line that names why training failed: for a TensorFlow error, its kind and the
    first line of its message that is not a stack or gRPC detail, with the peer it came
    from (a worker lost: "UnavailableError: Collective ops is aborted by: Socket closed
    (from /job:worker/replica:0/task:1)"), and the tasks TensorFlow's coordination service
    found unhealthy (a worker frozen: "... The following tasks are unhealthy (stopped sending
    heartbeats): worker 0 (10.0.0.7:2222)", with their addresses in `cluster`)."""
    if not isinstance(error, tf.errors.OpError):
        return f"{type(error).__name__}: {error}"
    lines = [ln.strip() for ln in error.message.splitlines()]
    meaningful = [
        ln for ln in lines if ln and not ln.startswith(_BOILERPLATE) and not ln.startswith("  ")
    ]
    reason = meaningful[0] if meaningful else (lines[0] if lines else "")
    reason = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", reason)  # the op, in eager errors
    tasks = [m.groups() for m in map(_TASK.match, lines) if m]
    if tasks:
        reason += " " + ", ".join(_task(job, int(i), cluster) for job, i in tasks)
    peer = re.search(r"remote target (\S+)", error.message)
    where = f" (from {peer.group(1)})" if peer else ""
    return f"{type(error).__name__}: {reason}{where}"
