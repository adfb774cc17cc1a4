"""Training on several nodes through Kubeflow Trainer (v2, API trainer.kubeflow.org/v1alpha1,
Trainer v2.2 and v2.3).

With `train_workers = N > 1` the train step's own pod is the chief of a
MultiWorkerMirroredStrategy cluster: it keeps the GPUs it asked for, reads its inputs and
writes the model artifact as with one worker. The N - 1 other workers run as a `TrainJob`
on the `mlpr-tensorflow` ClusterTrainingRuntime (k8s/trainer/), in the step's image, with
`python -m components.train` and the step's settings. Kubeflow Trainer has no TensorFlow
policy that would set TF_CONFIG, so each process builds it from the addresses passed on its
command line: the chief at its pod IP, the workers at their JobSet host names
(`<job>-node-0-<i>.<job>`, the headless service Trainer creates), the index from the pod's
job-completion index (`MLPR_WORKER_INDEX`, set by the runtime).

The workers read the transform graph and transformed examples from a copy on the repository
volume (ReadWriteMany, mounted by the step and by the runtime at /mnt/mlpr), removed when the
step ends. While the chief trains, a thread follows the TrainJob and prints each change of its
state; when the TrainJob fails, the chief is stopped (it would otherwise wait on a collective
for a worker that is gone).

Restarts: a worker lost takes the whole cluster down (MultiWorkerMirroredStrategy cannot go on
without it), and the chief, the step's own process, is outside the TrainJob, so a restart of
the TrainJob's pods by its runtime would leave them waiting for a chief that has exited. The
step restarts the cluster itself: it runs its chief as a child process
(`python -m components.train --task-type chief`, `TrainProcess`), and when training fails it
deletes the TrainJob, submits a new one and starts a new chief, up to `max_restarts` times;
every process resumes from the chief's last backup, on the repository volume. Each TrainJob's
`activeDeadlineSeconds` is what is left of the step's deadline, which bounds what no process
can see: workers that never start (no node with free GPUs) while the chief waits for them,
or a frozen worker left behind by a step that was killed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable

TRAINER_GROUP = "trainer.kubeflow.org"
TRAINER_VERSION = "v1alpha1"
TRAINJOBS = "trainjobs"
RUNTIME = "mlpr-tensorflow"  # k8s/trainer/runtime.yaml
PORT = 2222  # each process's collective (gRPC) port
INDEX_ENV = "MLPR_WORKER_INDEX"
# The train step's pod IP (the Downward API; pipeline.py sets it): the chief's address.
POD_IP_ENV = "MLPR_POD_IP"
# Where the step stages the workers' inputs: on the repository volume, which the step and the
# runtime mount at /mnt/mlpr (components/resources.py REPOSITORY_MOUNT; this module stays
# free of kfp, which a component's runtime cannot import whole).
VOLUME = "/mnt/mlpr"
STAGING_ROOT = f"{VOLUME}/train-jobs"
# Where a multi-node step backs its training up when checkpoint_root is empty: on the volume,
# which every worker mounts (they resume from the chief's backup).
CHECKPOINT_ROOT = f"{VOLUME}/checkpoints"
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def tf_config(chief: str, workers: list[str], task_type: str, index: int) -> str:
    """TF_CONFIG for one process of a cluster of `chief` (host:port; empty: none, worker 0
    leads) and `workers` (host:port each, in index order)."""
    cluster = {"worker": list(workers)}
    if chief:
        cluster["chief"] = [chief]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def job_name() -> str:
    """A TrainJob name: a DNS label short enough for JobSet's pod host names."""
    return f"mlpr-train-{uuid.uuid4().hex[:8]}"


def worker_addresses(job: str, count: int) -> list[str]:
    """host:port of each TrainJob worker: JobSet names pod i of the "node" job
    `<job>-node-0-<i>`, under the headless service `<job>`."""
    return [f"{job}-node-0-{i}.{job}:{PORT}" for i in range(count)]


def trainjob(
    name: str,
    image: str,
    workers: int,
    arguments: list[str],
    accelerator: str = "",
    accelerators_per_worker: int = 0,
    deadline_seconds: int = 0,
) -> dict:
    """The TrainJob of `workers` processes running `python -m components.train <arguments>`
    on the mlpr-tensorflow runtime, each asking for `accelerators_per_worker` of
    `accelerator` (none: CPU workers). `deadline_seconds` > 0: the TrainJob's
    activeDeadlineSeconds (Kubeflow Trainer then ends its pods and fails it with reason
    DeadlineExceeded)."""
    trainer: dict = {
        "image": image,
        "command": ["python", "-m", "components.train"],
        "args": list(arguments),
        "numNodes": workers,
    }
    if accelerator and accelerators_per_worker:
        count = str(accelerators_per_worker)
        trainer["resourcesPerNode"] = {
            "requests": {accelerator: count},
            "limits": {accelerator: count},
        }
    spec: dict = {
        "runtimeRef": {"name": RUNTIME, "kind": "ClusterTrainingRuntime"},
        "trainer": trainer,
    }
    if deadline_seconds > 0:
        spec["activeDeadlineSeconds"] = int(deadline_seconds)
    return {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "mlpr"}},
        "spec": spec,
    }


def worker_arguments(
    transform_dir: str,
    transformed_dir: str,
    pretrained_dir: str,
    chief: str,
    workers: list[str],
    settings: dict,
    backup_dir: str = "",
    hang_seconds: float = 120.0,
) -> list[str]:
    """The command line of every TrainJob worker: the staged inputs, the cluster, the backup
    folder they share with the chief, and the step's training settings (`settings`: option
    name -> value, as the CLI spells them)."""
    return process_arguments(
        transform_dir, transformed_dir, pretrained_dir,
        # A worker's outputs go to a temporary directory (distribute.output_dir_for).
        os.path.join(os.path.dirname(transform_dir), "worker-model"),
        chief, workers, "worker", settings, backup_dir, hang_seconds,
    )  # fmt: skip


def process_arguments(
    transform_dir: str,
    transformed_dir: str,
    pretrained_dir: str,
    model_dir: str,
    chief: str,
    workers: list[str],
    task_type: str,
    settings: dict,
    backup_dir: str = "",
    hang_seconds: float = 120.0,
    text_cache_dir: str = "",
) -> list[str]:
    """The command line of one process of the cluster (`task_type` "chief" or "worker"; a
    worker's index comes from its pod)."""
    arguments = [
        "--transform-dir", transform_dir,
        "--transformed-dir", transformed_dir,
        "--pretrained-dir", pretrained_dir,
        "--model-dir", model_dir,
        "--chief-address", chief,
        "--worker-addresses", ",".join(workers),
        "--task-type", task_type,
        "--backup-dir", backup_dir,
        "--hang-seconds", str(hang_seconds),
    ]  # fmt: skip
    if text_cache_dir:
        arguments += ["--text-cache-dir", text_cache_dir]
    for option, value in settings.items():
        name = option.replace("_", "-")
        if isinstance(value, bool):  # a --name/--no-name flag
            arguments.append(f"--{name}" if value else f"--no-{name}")
        else:
            arguments += [f"--{name}", str(value)]
    return arguments


def stage(sources: dict[str, str], directory: str) -> dict[str, str]:
    """Copy each input directory into `directory` (on the shared volume): name -> its copy."""
    os.makedirs(directory, exist_ok=True)
    copies = {}
    for name, source in sources.items():
        copies[name] = os.path.join(directory, name)
        shutil.copytree(source, copies[name], dirs_exist_ok=True)
    return copies


def job_state(job: dict) -> tuple[str, str]:
    """(state, reason) of a TrainJob object: "Complete" or "Failed" with its condition's
    reason and message once it has ended; otherwise "Running" with the child jobs' counts."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            reason = ": ".join(
                part for part in (condition.get("reason"), condition.get("message")) if part
            )
            return condition["type"], reason
    counts = {}
    for child in status.get("jobsStatus") or []:
        for key in ("active", "ready", "succeeded", "failed", "suspended"):
            counts[key] = counts.get(key, 0) + int(child.get(key) or 0)
    summary = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    return "Running", summary or "waiting for its pods"


class JobWatcher:
    """Follows a TrainJob from a thread: prints each change of its state, and calls
    `on_failure(reason)` when it fails. `get_job()` returns the TrainJob object."""

    def __init__(
        self,
        name: str,
        get_job: Callable[[], dict],
        on_failure: Callable[[str], None],
        interval_s: float = 10.0,
        out=sys.stdout,
    ):
        self.name, self._get, self._on_failure = name, get_job, on_failure
        self._interval, self._out = interval_s, out
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)
        self.last: tuple[str, str] | None = None

    def start(self) -> JobWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def poll(self) -> tuple[str, str]:
        """Reads the TrainJob once; prints its state when it changed."""
        try:
            state = job_state(self._get())
        except Exception as e:  # noqa: BLE001 (an API hiccup is reported, the watch goes on)
            state = ("Unknown", f"the TrainJob could not be read: {e}")
        if state != self.last:
            print(f"TrainJob {self.name}: {state[0]} ({state[1]})", file=self._out, flush=True)
            self.last = state
        return state

    def _run(self) -> None:
        while not self._stopped.is_set():
            state, reason = self.poll()
            if state == "Failed":
                self._on_failure(f"TrainJob {self.name} failed: {reason}")
                return
            if state == "Complete":
                return
            self._stopped.wait(self._interval)


class TrainProcess:
    """One training process of the cluster as a child, `python -m components.train
    <arguments>`: `run()` passes its output on line by line and returns its exit status and
    its last "training failed ..." line; `kill()`, from another thread, ends it."""

    def __init__(self, arguments: list[str], out=sys.stdout):
        self.arguments, self._out = list(arguments), out
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._killed = False

    def run(self) -> tuple[int, str]:
        with self._lock:
            if self._killed:
                return -9, "stopped before it started"
            self._process = subprocess.Popen(
                [sys.executable, "-m", "components.train", *self.arguments],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        reason = ""
        for line in self._process.stdout:
            self._out.write(line)
            self._out.flush()
            if line.startswith("training failed"):
                reason = line.strip()
        return self._process.wait(), reason

    def kill(self) -> None:
        with self._lock:
            self._killed = True
            if self._process is not None and self._process.poll() is None:
                self._process.kill()


class TrainJobs:
    """Create, read and delete TrainJobs through the Kubernetes API (the step's service
    account needs the Role in k8s/trainer/rbac.yaml)."""

    def __init__(self, namespace: str | None = None, api=None):
        if api is None:
            from kubernetes import client, config

            config.load_incluster_config()
            api = client.CustomObjectsApi()
        if namespace is None:
            with open(NAMESPACE_FILE) as fh:
                namespace = fh.read().strip()
        self.api, self.namespace = api, namespace

    def _call(self, verb: str, *args):
        method = getattr(self.api, f"{verb}_namespaced_custom_object")
        return method(TRAINER_GROUP, TRAINER_VERSION, self.namespace, TRAINJOBS, *args)

    def create(self, job: dict) -> dict:
        return self._call("create", job)

    def get(self, name: str) -> dict:
        return self._call("get", name)

    def delete(self, name: str) -> None:
        self._call("delete", name)
