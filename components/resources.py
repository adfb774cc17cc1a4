"""What each step asks of the cluster, named in one place (as `images.py` names the image).

CPU and memory requests and the caching choice per step, the shared volume that holds the
input data and the TF Serving model repository, and the GPU settings of the steps that
train. `pipeline.py` applies them through the helpers below; kfp.local ignores all of them,
so a local run is unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kfp import kubernetes
from kfp.dsl import PipelineTask

from components.train.multiworker import POD_IP_ENV

# The extended resource the NVIDIA device plugin advertises, and the taint GPU node pools
# carry (GKE, AKS, EKS and the NVIDIA GPU Operator all use this key).
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
# GPUs per GPU step in the default compiled pipeline (`pipeline.py compile --gpus N`).
DEFAULT_GPUS = 1

# The PersistentVolumeClaim (k8s/storage) holding input data and the model repository,
# mounted at the same path in every step that reads or writes them.
REPOSITORY_PVC = "mlpr-repository"
REPOSITORY_MOUNT = "/mnt/mlpr"
# The model repository is this sub-directory of the volume: the pipeline pushes to
# model_base = REPOSITORY_MOUNT/SERVING_DIR, and TF Serving mounts it (subPath) at /models.
SERVING_DIR = "serving"
DEFAULT_MODEL_BASE = f"{REPOSITORY_MOUNT}/{SERVING_DIR}"


@dataclasses.dataclass(frozen=True)
class StepResources:
    """Requests and caching of one step.

    Args:
        cpu: CPU request, Kubernetes notation ("2", "500m").
        memory: memory request ("8Gi").
        cache: whether Kubeflow may reuse the outputs of an earlier run with the same inputs.
    """

    cpu: str
    memory: str
    cache: bool


# Ingest, transform and train are functions of their inputs, so re-running with the same
# parameters reuses them (a run that only changes the gate does not retrain). Evaluate
# compares against the model being served and push writes a new version: both depend on the
# state of the model repository, so they always run.
INGEST = StepResources(cpu="2", memory="4Gi", cache=True)
TRANSFORM = StepResources(cpu="2", memory="8Gi", cache=True)
PRETRAIN = StepResources(cpu="4", memory="16Gi", cache=True)  # a GPU step, like train
TRAIN = StepResources(cpu="4", memory="16Gi", cache=True)
EVALUATE = StepResources(cpu="2", memory="8Gi", cache=False)
PUSH = StepResources(cpu="500m", memory="1Gi", cache=False)


@dataclasses.dataclass(frozen=True)
class Retry:
    """How often a failed step runs again, and after how long (KFP's retry policy, fixed at
    compile time: the IR's RetryPolicy holds numbers, not run parameters).

    Every step is safe to run again: ingest and transform replace what an earlier attempt
    wrote before they write, train resumes from its last epoch's backup
    (components/train/backup.py), evaluate rewrites its verdict, and push publishes a version
    by renaming a whole copy into place.

    Args:
        count: retries after the first attempt (0: none).
        backoff: the wait before the first retry ("30s").
        factor: each next wait is the last one times this.
        max_duration: no retry starts after this long ("3600s").
    """

    count: int
    backoff: str = "30s"
    factor: float = 2.0
    max_duration: str = "3600s"


# A preempted node or an evicted pod costs a retry, not the run.
DEFAULT_RETRY = Retry(count=2)
NO_RETRY = Retry(count=0)


@dataclasses.dataclass(frozen=True)
class GpuRequest:
    """The GPU settings of a step, usually pipeline parameters (channels) so a run picks them.

    Args:
        accelerator_type: the extended resource to request, e.g. "nvidia.com/gpu".
        accelerator_count: how many per step.
        node_selector: node labels the step's node must carry (a dict; {} for any GPU node).
    """

    accelerator_type: Any
    accelerator_count: Any
    node_selector: Any


def set_resources(
    task: PipelineTask, step: StepResources, retry: Retry = DEFAULT_RETRY
) -> PipelineTask:
    """Sets the step's CPU and memory requests, its caching and its retries."""
    task = (
        task.set_cpu_request(step.cpu)
        .set_memory_request(step.memory)
        .set_caching_options(enable_caching=step.cache)
    )
    if retry.count:
        task.set_retry(
            num_retries=retry.count,
            backoff_duration=retry.backoff,
            backoff_factor=retry.factor,
            backoff_max_duration=retry.max_duration,
        )
    return task


def mount_repository(task: PipelineTask, pvc_name: Any) -> PipelineTask:
    """Mounts the data and model-repository volume at REPOSITORY_MOUNT."""
    return kubernetes.mount_pvc(task, pvc_name=pvc_name, mount_path=REPOSITORY_MOUNT)


def use_gpus(task: PipelineTask, gpu: GpuRequest | None) -> PipelineTask:
    """Schedules a step on GPU nodes: accelerator type and count, the GPU taint's
    toleration and the node selector. With `gpu=None` (a CPU-only pipeline) the task is
    left as it is: no accelerator request, toleration or node selector.
    """
    if gpu is None:
        return task
    task.set_accelerator_type(gpu.accelerator_type)
    task.set_accelerator_limit(gpu.accelerator_count)
    kubernetes.add_toleration(task, **GPU_TOLERATION)
    kubernetes.add_node_selector_json(task, gpu.node_selector)
    return task


def expose_pod_ip(task: PipelineTask) -> PipelineTask:
    """Gives the step its pod IP in $MLPR_POD_IP (the Downward API's status.podIP)."""
    return kubernetes.use_field_path_as_env(task, env_name=POD_IP_ENV, field_path="status.podIP")
