"""k8s/kserve: every kustomization renders with kubectl's kustomize; each InferenceService is
valid against KServe's own schema (its v0.20.0 CRD, unknown fields refused) and every other
object against the Kubernetes schemas; and the InferenceService agrees with the plain TF Serving
Deployment (volume, model, configs, GPU placement and sizing), with KServe's TF Serving runtime
it runs on, and with what Knative accepts."""

from __future__ import annotations

import copy
import re

import kserve_schema
import kubernetes_validate
import pytest
from k8s_testlib import KUBERNETES_VERSIONS, ROOT, mounted_config_files, one, render
from kubernetes.utils import parse_quantity

import pipeline_parameters
from components import resources
from serving import tfs_config

BASE = "kserve/base"
GRPC = "kserve/overlays/grpc"
CANARY = "kserve/overlays/canary"
KUSTOMIZATIONS = (BASE, GRPC, CANARY)
# Where KServe mounts a storageUri in the model container (its DefaultModelLocalMountPath).
KSERVE_MOUNT = "/mnt/models"
# KServe's InferenceService name rule (IsvcNameFmt, pkg/apis/serving/v1beta1/
# inference_service_validation.go): it becomes part of a DNS name.
ISVC_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# What a Knative revision's pod may set (knative/serving pkg/apis/serving/fieldmask.go
# PodSpecMask), and the fields that need a feature flag of config-features turned on.
KNATIVE_POD_FIELDS = {
    "serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks",
    "automountServiceAccountToken",
}  # fmt: skip
KNATIVE_FLAGGED_POD_FIELDS = {
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "tolerations": "kubernetes.podspec-tolerations",
}
# The predictor's own fields (ComponentExtensionSpec and the model), which KServe consumes.
KSERVE_PREDICTOR_FIELDS = {"model", "minReplicas", "maxReplicas", "canaryTrafficPercent"}
# Knative's port names (HTTP/1.1, or HTTP/2 cleartext for gRPC), each with the TF Serving flag
# of the port it fits: REST, gRPC.
KNATIVE_PORT_NAMES = {"http1": "rest_api_port", "h2c": "port"}


def _isvc(kustomization: str) -> dict:
    return one(render(kustomization), "InferenceService")


def _predictor(kustomization: str) -> dict:
    return _isvc(kustomization)["spec"]["predictor"]


def _flags(args: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in args)


def _plain_gpu() -> tuple[dict, dict]:
    """The plain GPU Deployment's pod spec and its TF Serving container."""
    pod = one(render("overlays/gpu"), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def _config_files(kustomization: str) -> dict[str, str]:
    docs = render(kustomization)
    predictor = one(docs, "InferenceService")["spec"]["predictor"]
    return mounted_config_files(docs, predictor, predictor["model"])


def _plain_config_files() -> dict[str, str]:
    docs = render("overlays/gpu")
    pod, container = _plain_gpu()
    return mounted_config_files(docs, pod, container)


def _merged_container(kustomization: str) -> dict:
    """The model container as KServe builds it from the runtime's (MergeRuntimeContainers:
    the InferenceService's fields over the runtime's, resource maps merged key by key, args
    appended to the runtime's)."""
    (runtime_container,) = kserve_schema.runtime()["spec"]["containers"]
    model = _predictor(kustomization)["model"]
    merged = {**runtime_container, **model}
    merged["args"] = runtime_container["args"] + model["args"]
    merged["resources"] = {
        kind: {**runtime_container["resources"].get(kind, {}), **model["resources"].get(kind, {})}
        for kind in ("requests", "limits")
    }
    return merged


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_each_inferenceservice_is_valid_against_kserves_schema(kustomization):
    isvc = _isvc(kustomization)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert kserve_schema.errors(isvc) == []
    assert ISVC_NAME.fullmatch(isvc["metadata"]["name"])


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_other_object_is_valid_against_the_kubernetes_schemas(kustomization, version):
    if version == "latest":
        version = kubernetes_validate.latest_version()
    others = [d for d in render(kustomization) if d["kind"] != "InferenceService"]
    # The ConfigMap of the TF Serving configs; the GPU values (local-config) stay out.
    assert [d["kind"] for d in others] == ["ConfigMap"]
    for doc in others:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_an_unknown_field_and_a_wrong_type():
    # The check above means something: a misspelt field and a string where KServe wants an
    # integer are errors, each at its path.
    isvc = _isvc(BASE)
    misspelt = copy.deepcopy(isvc)
    model = misspelt["spec"]["predictor"]["model"]
    model["storageURI"] = model.pop("storageUri")
    assert kserve_schema.errors(misspelt) == [
        "/spec/predictor/model: Additional properties are not allowed ('storageURI' was unexpected)"
    ]
    wrong_type = copy.deepcopy(isvc)
    wrong_type["spec"]["predictor"]["minReplicas"] = "2"
    assert kserve_schema.errors(wrong_type) == [
        "/spec/predictor/minReplicas: '2' is not of type 'integer'"
    ]
    # And the schema is KServe's: the InferenceService of its TensorFlow guide is valid.
    guide = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "flower-sample"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "tensorflow"},
                    "storageUri": "gs://kfserving-examples/models/tensorflow/flowers",
                }
            }
        },
    }
    assert kserve_schema.errors(guide) == []
    assert kserve_schema.errors({**guide, "spec": {}}) == [
        "/spec: 'predictor' is a required property"
    ]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_predictor_serves_the_repository_the_pipeline_pushes_into(kustomization):
    isvc = _isvc(kustomization)
    model = isvc["spec"]["predictor"]["model"]
    # The claim and directory of the plain Deployment's volume, the push step's model_base.
    pod, container = _plain_gpu()
    (claim,) = [v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "model-repository"]
    assert model["storageUri"] == f"pvc://{claim['claimName']}/{mount['subPath']}"
    assert model["storageUri"] == f"pvc://{resources.REPOSITORY_PVC}/{resources.SERVING_DIR}"
    defaults = pipeline_parameters.defaults()
    assert claim["claimName"] == defaults["repository_pvc"]
    # On the cluster the steps mount the claim at REPOSITORY_MOUNT and push into model_base.
    assert f"{resources.REPOSITORY_MOUNT}/{mount['subPath']}" == resources.DEFAULT_MODEL_BASE
    # TF Serving reads the model config file, which replaces the runtime's single-model flags.
    flags = _flags(_merged_container(kustomization)["args"])
    files = _config_files(kustomization)
    models = tfs_config.parse(files[flags["model_config_file"]], "ModelServerConfig")
    (served,) = models.model_config_list.config
    assert served.name == defaults["model_name"] == "mlpr"
    assert served.base_path == f"{KSERVE_MOUNT}/{served.name}"
    # Everything else of the model config (platform, version policy) is the plain Deployment's.
    plain_flags = _flags(container["args"])
    plain_files = _plain_config_files()
    plain = tfs_config.parse(plain_files[plain_flags["model_config_file"]], "ModelServerConfig")
    (plain_served,) = plain.model_config_list.config
    plain_served.base_path = served.base_path
    assert served == plain_served
    # The same GPU batching and monitoring, and the same batching and polling flags.
    for flag, message in (
        ("batching_parameters_file", "BatchingParameters"),
        ("monitoring_config_file", "MonitoringConfig"),
    ):
        ours = tfs_config.parse(files[flags[flag]], message)
        assert ours == tfs_config.parse(plain_files[plain_flags[flag]], message), flag
    for flag in ("enable_batching", "file_system_poll_wait_seconds"):
        assert flags[flag] == plain_flags[flag], flag


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_gpu_placement_and_sizing_are_the_plain_gpu_deployments(kustomization):
    predictor = _predictor(kustomization)
    pod, container = _plain_gpu()
    assert predictor["nodeSelector"] == pod["nodeSelector"]
    assert predictor["tolerations"] == pod["tolerations"]
    assert resources.GPU_TOLERATION in predictor["tolerations"]
    model = predictor["model"]
    assert model["env"] == container["env"]
    ours, plain = model["resources"], container["resources"]
    assert ours["requests"] == plain["requests"]
    assert plain["limits"][resources.GPU_RESOURCE] == ours["limits"][resources.GPU_RESOURCE] == 1
    # A CPU limit (the runtime's 1 CPU would stay otherwise), and it is the request.
    assert "cpu" not in plain["limits"]
    assert {k: v for k, v in ours["limits"].items() if k != "cpu"} == plain["limits"]
    assert parse_quantity(ours["limits"]["cpu"]) == parse_quantity(ours["requests"]["cpu"])
    # The image of the plain GPU overlay: the runtime's image with runtimeVersion as its tag.
    (runtime_container,) = kserve_schema.runtime()["spec"]["containers"]
    repository = runtime_container["image"].rsplit(":", 1)[0]
    assert f"{repository}:{model['runtimeVersion']}" == container["image"]
    hpa = one(render("overlays/gpu"), "HorizontalPodAutoscaler")["spec"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (
        hpa["minReplicas"],
        hpa["maxReplicas"],
    )


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_runtime_takes_the_predictor(kustomization):
    isvc = _isvc(kustomization)
    model = isvc["spec"]["predictor"]["model"]
    runtime = kserve_schema.runtime()
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    merged = _merged_container(kustomization)
    (runtime_container,) = runtime["spec"]["containers"]
    # The predictor adds flags; it overrides none of the runtime's (TF Serving would take the
    # last of two, which the runtime's placement of ours would decide).
    assert not _flags(runtime_container["args"]).keys() & _flags(model["args"]).keys()
    flags = _flags(merged["args"])
    # TF Serving serves the models of --model_config_file whenever it is given, ignoring
    # --model_name and --model_base_path (tensorflow_serving/model_servers/server.cc).
    assert {"model_config_file", "model_name", "model_base_path"} <= flags.keys()
    # The one port Knative routes is the runtime's REST or gRPC port, by its Knative name.
    (port,) = model["ports"]
    assert port["containerPort"] == int(flags[KNATIVE_PORT_NAMES[port["name"]]])
    assert (port["name"] == "h2c") == (model["protocolVersion"] == "grpc-v1")
    # Resources as KServe merges them: every request within its limit.
    for name, request in merged["resources"]["requests"].items():
        limit = merged["resources"]["limits"].get(name)
        assert limit is None or parse_quantity(request) <= parse_quantity(limit), name
    # Metrics: the monitoring config's path on the runtime's REST port.
    annotations = isvc["metadata"]["annotations"]
    monitoring = tfs_config.parse(
        _config_files(kustomization)[flags["monitoring_config_file"]], "MonitoringConfig"
    )
    assert annotations["prometheus.kserve.io/port"] == flags["rest_api_port"]
    assert int(flags["rest_api_port"]) == tfs_config.KSERVE_REST_PORT  # the file's comment
    assert annotations["prometheus.kserve.io/path"] == monitoring.prometheus_config.path
    assert monitoring.prometheus_config.enable is True


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_knative_takes_the_revision(kustomization):
    isvc = _isvc(kustomization)
    # Knative mode: revisions, and the traffic split of the canary.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    predictor = isvc["spec"]["predictor"]
    pod_fields = predictor.keys() - KSERVE_PREDICTOR_FIELDS
    assert pod_fields <= KNATIVE_POD_FIELDS | KNATIVE_FLAGGED_POD_FIELDS.keys()
    # The feature flags the manifests need are the ones docs/kserve.md asks for.
    with open(f"{ROOT}/docs/kserve.md", encoding="utf-8") as fh:
        docs = fh.read()
    for field in pod_fields & KNATIVE_FLAGGED_POD_FIELDS.keys():
        assert f'{KNATIVE_FLAGGED_POD_FIELDS[field]}: "enabled"' in docs, field
    model = predictor["model"]
    (port,) = model["ports"]
    assert port["name"] in KNATIVE_PORT_NAMES and port["protocol"] == "TCP"
    # Knative sends the readiness and liveness probes to the one port whatever they name; all
    # three name it.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        handler = model[probe].get("tcpSocket") or model[probe]["httpGet"]
        assert handler["port"] == port["containerPort"], probe
    # Every volume is mounted (Knative refuses one that is not), none at a reserved path.
    mounts = {m["name"]: m["mountPath"] for m in model["volumeMounts"]}
    assert mounts.keys() == {v["name"] for v in predictor["volumes"]}
    assert not set(mounts.values()) & {"/", "/dev", "/dev/log", KSERVE_MOUNT}


def test_readiness_over_rest_is_the_plain_deployments_over_grpc_the_open_port():
    # Ready while a version of the model is AVAILABLE, as the plain Deployment; the gRPC port
    # has no such check (TF Serving opens it once the model has loaded).
    plain_path = _plain_gpu()[1]["readinessProbe"]["httpGet"]["path"]
    assert plain_path == "/v1/models/mlpr/metadata"
    assert _predictor(BASE)["model"]["readinessProbe"]["httpGet"]["path"] == plain_path
    assert _predictor(GRPC)["model"]["readinessProbe"]["tcpSocket"] == {"port": 9000}
    assert _isvc(GRPC)["metadata"]["name"] == "mlpr-grpc"


def test_canary_traffic_percent_is_set_in_the_canary_overlay_only():
    assert "canaryTrafficPercent" not in _predictor(BASE)
    assert "canaryTrafficPercent" not in _predictor(GRPC)
    canary = _isvc(CANARY)
    percent = canary["spec"]["predictor"].pop("canaryTrafficPercent")
    assert isinstance(percent, int) and 0 < percent < 100
    # Otherwise the base: the change to roll out goes into the base, applied through this.
    # (kustomize writes the CPU limit it copies as 4 in one and "4" in the other: the same
    # quantity, so quantities are compared as quantities.)
    assert _quantities_parsed(canary) == _quantities_parsed(_isvc(BASE))


def _quantities_parsed(isvc: dict) -> dict:
    isvc = copy.deepcopy(isvc)
    for requirements in isvc["spec"]["predictor"]["model"]["resources"].values():
        requirements.update({k: parse_quantity(v) for k, v in requirements.items()})
    return isvc


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_inferenceservice_keeps_apart_from_the_plain_deployment(kustomization):
    # Both may run in one namespace: the plain Service does not select the predictor's pods
    # (KServe gives them the InferenceService's labels), and no ConfigMap name is shared.
    docs = render(kustomization)
    labels = one(docs, "InferenceService")["metadata"]["labels"]
    plain = render("overlays/gpu")
    selector = one(plain, "Service")["spec"]["selector"]
    assert not selector.items() <= labels.items()
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    assert not names & {d["metadata"]["name"] for d in plain if d["kind"] == "ConfigMap"}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_model_container_runs_locked_down(kustomization):
    model = _predictor(kustomization)["model"]
    pod, container = _plain_gpu()
    # The plain pod's security context (Knative takes it on the container) and its container's.
    assert model["securityContext"] == {**pod["securityContext"], **container["securityContext"]}
    assert model["securityContext"]["readOnlyRootFilesystem"] is True
    # With a read-only root filesystem, /tmp is the only writable place.
    (tmp,) = [m for m in model["volumeMounts"] if m["mountPath"] == "/tmp"]
    volumes = {v["name"]: v for v in _predictor(kustomization)["volumes"]}
    assert "emptyDir" in volumes[tmp["name"]]
    assert _predictor(kustomization)["automountServiceAccountToken"] is False
