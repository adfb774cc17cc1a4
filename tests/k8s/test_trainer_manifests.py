"""k8s/trainer (multi-node training): the Role and RoleBinding are valid against the
Kubernetes schemas; the ClusterTrainingRuntime and the TrainJob the train step submits are
valid against Kubeflow Trainer's own API models (kubeflow-trainer-api, API
trainer.kubeflow.org/v1alpha1), no field lost on the way; and the runtime, the TrainJob,
the worker CLI, the storage and the RBAC agree with each other."""

from __future__ import annotations

import kubernetes_validate
import pytest
from k8s_testlib import KUBERNETES_VERSIONS, one, render
from kubeflow_trainer_api import models

from components import resources
from components.images import BASE_IMAGE
from components.train import multiworker as mw


def _lost_fields(original, parsed, path="") -> list[str]:
    """Paths of `original` that `parsed` (the model's own dict) does not carry: a field the
    API does not know, misspelt or misplaced. (The models may add defaults.)"""
    if isinstance(original, dict):
        if not isinstance(parsed, dict):
            return [path]
        lost = []
        for key, value in original.items():
            if key not in parsed:
                lost.append(f"{path}/{key}")
            else:
                lost += _lost_fields(value, parsed[key], f"{path}/{key}")
        return lost
    if isinstance(original, list):
        if not isinstance(parsed, list) or len(parsed) != len(original):
            return [path]
        pairs = enumerate(zip(original, parsed, strict=True))
        return [p for i, (a, b) in pairs for p in _lost_fields(a, b, f"{path}[{i}]")]
    return [] if original == parsed else [f"{path}: {original!r} became {parsed!r}"]


def _check(model, doc: dict) -> list[str]:
    return _lost_fields(doc, model.from_dict(doc).to_dict())


def _runtime() -> dict:
    return one(render("trainer"), "ClusterTrainingRuntime")


def _node(runtime: dict) -> dict:
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    return job


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_rbac_is_valid_against_the_kubernetes_schemas(version):
    if version == "latest":
        version = kubernetes_validate.latest_version()
    docs = [d for d in render("trainer") if d["kind"] in ("Role", "RoleBinding")]
    assert len(docs) == 2
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_runtime_is_valid_against_the_trainer_api():
    assert _check(models.TrainerV1alpha1ClusterTrainingRuntime, _runtime()) == []


def test_the_check_finds_a_misspelt_field():
    runtime = _runtime()
    pod = _node(runtime)["template"]["spec"]["template"]["spec"]
    pod["containers"][0]["volumeMount"] = pod["containers"][0].pop("volumeMounts")
    lost = _check(models.TrainerV1alpha1ClusterTrainingRuntime, runtime)
    assert len(lost) == 1 and lost[0].endswith("/volumeMount")


def test_the_trainjob_the_step_submits_is_valid_against_the_trainer_api():
    arguments = mw.worker_arguments(
        "/mnt/mlpr/x/transform", "/mnt/mlpr/x/transformed", "/mnt/mlpr/x/pretrained",
        "10.0.0.5:2222", mw.worker_addresses("x", 3), {"batch_size": 64},
    )  # fmt: skip
    job = mw.trainjob(mw.job_name(), BASE_IMAGE, 3, arguments, resources.GPU_RESOURCE, 2, 86400)
    assert job["spec"]["activeDeadlineSeconds"] == 86400  # a field of the TrainJob itself
    assert _check(models.TrainerV1alpha1TrainJob, job) == []


def test_the_runtime_runs_what_the_step_expects():
    runtime = _runtime()
    assert runtime["metadata"]["name"] == mw.RUNTIME
    node = _node(runtime)
    # Kubeflow Trainer fills the container named "node" of the job marked as the trainer
    # step with the TrainJob's image, command, args and numNodes.
    assert node["name"] == "node"
    assert node["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"  # fmt: skip
    job = node["template"]["spec"]
    assert job["completionMode"] == "Indexed"  # the index each worker reads
    assert runtime["spec"]["template"]["spec"]["failurePolicy"]["maxRestarts"] == 0
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "node"
    env = {e["name"]: e for e in container["env"]}
    assert env[mw.INDEX_ENV]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert [p["containerPort"] for p in container["ports"]] == [mw.PORT]
    # The staged inputs are on the repository volume, where the step puts them.
    (mount,) = container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert mount["name"] == volume["name"] and mount["mountPath"] == resources.REPOSITORY_MOUNT
    assert mw.VOLUME == resources.REPOSITORY_MOUNT
    assert mw.STAGING_ROOT.startswith(resources.REPOSITORY_MOUNT + "/")
    assert mw.CHECKPOINT_ROOT.startswith(resources.REPOSITORY_MOUNT + "/")
    pvc = one(render("storage"), "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["metadata"]["name"] == resources.REPOSITORY_PVC
    assert pod["securityContext"]["runAsUser"] == 10001
    assert {"key": resources.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_the_role_allows_what_the_step_calls():
    docs = render("trainer")
    role, binding = one(docs, "Role"), one(docs, "RoleBinding")
    (rule,) = role["rules"]
    assert rule["apiGroups"] == [mw.TRAINER_GROUP] and rule["resources"] == [mw.TRAINJOBS]
    called = {name.split("_")[0] for name in vars(mw.TrainJobs) if not name.startswith("_")}
    assert called == set(rule["verbs"]) == {"create", "get", "delete"}
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
