"""k8s/: every kustomization renders with kubectl's kustomize, every object is valid against
the Kubernetes OpenAPI schemas (strict: no unknown fields), and the objects agree with each
other, with the TF Serving configs and with the pipeline that fills the model repository."""

from __future__ import annotations

import importlib.metadata
import re

import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format
from k8s_testlib import (
    KUBERNETES_VERSIONS,
    OVERLAYS,
    mounted_config_files,
    one,
    render,
    render_text,
)
from tensorflow_serving.config import model_server_config_pb2

from components import resources
from serving import tfs_config

GPU = resources.GPU_RESOURCE


def _container(docs):
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _config_files(docs) -> dict[str, str]:
    """Mount path of each file the ConfigMaps give the container -> its text."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    return mounted_config_files(docs, pod, _container(docs))


def _flag(container, name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith(f"--{name}=")]
    return value


@pytest.mark.parametrize("kustomization", [f"overlays/{o}" for o in OVERLAYS] + ["storage"])
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(kustomization, version):
    if version == "latest":
        version = kubernetes_validate.latest_version()
    docs = render(kustomization)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_misspelt_field():
    # The check above means something: a typo in a probe is an error, not ignored.
    deployment = one(render("overlays/cpu"), "Deployment")
    probe = _container([deployment])["livenessProbe"]
    probe["tcpSocekt"] = probe.pop("tcpSocket")
    with pytest.raises(kubernetes_validate.ValidationError, match="tcpSocekt"):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_refer_to_each_other(overlay):
    docs = render(f"overlays/{overlay}")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Service",
    ]
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    service, pdb, hpa = (
        one(docs, "Service"),
        one(docs, "PodDisruptionBudget"),
        one(docs, "HorizontalPodAutoscaler"),
    )
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    # The HPA owns the replica count; a count in the Deployment would fight it on every apply.
    assert "replicas" not in deployment["spec"]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # Every ConfigMap a volume names exists, under the hashed name kustomize gave it.
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    used = {v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v}
    assert used == config_maps and all(re.search(r"-[a-z0-9]{10}$", n) for n in used)
    container = _container(docs)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "grpc": (8500, "grpc"),
        "http": (8501, "http"),
    }
    assert _flag(container, "port") == "8500" and _flag(container, "rest_api_port") == "8501"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        handler = container[probe].get("tcpSocket") or container[probe]["httpGet"]
        assert handler["port"] in ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tfserving_reads_the_model_the_pipeline_pushes(overlay):
    docs = render(f"overlays/{overlay}")
    container = _container(docs)
    files = _config_files(docs)
    # Every config file the server is pointed at is mounted from a ConfigMap.
    for flag in ("model_config_file", "monitoring_config_file", "batching_parameters_file"):
        assert _flag(container, flag) in files
    models = text_format.Parse(
        files[_flag(container, "model_config_file")], model_server_config_pb2.ModelServerConfig()
    )
    (model,) = models.model_config_list.config
    # The pipeline pushes model_base/model_name/<version>/ with model_base on the volume's
    # serving/ directory, which the Deployment mounts at /models.
    import pipeline_parameters

    defaults = pipeline_parameters.defaults()
    assert model.name == defaults["model_name"] == "mlpr"
    assert model.model_platform == "tensorflow"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "model-repository"]
    assert mount["subPath"] == resources.SERVING_DIR and mount["readOnly"] is True
    assert model.base_path == f"{mount['mountPath']}/{model.name}"
    assert f"{resources.REPOSITORY_MOUNT}/{mount['subPath']}" == resources.DEFAULT_MODEL_BASE
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    (claim,) = [v["persistentVolumeClaim"] for v in volumes if v["name"] == "model-repository"]
    assert claim["claimName"] == resources.REPOSITORY_PVC == defaults["repository_pvc"]
    pvc = one(render("storage"), "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == resources.REPOSITORY_PVC
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # pipeline pods and replicas
    # Ready while a version of that model is AVAILABLE: its metadata answers 200 only then
    # (tests/serving/test_server_health.py asks the local server the same path); alive while
    # the process listens.
    assert container["readinessProbe"]["httpGet"] == {
        "path": f"/v1/models/{model.name}/metadata",
        "port": "http",
    }
    assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_scrapes_the_path_the_monitoring_config_enables(overlay):
    docs = render(f"overlays/{overlay}")
    container = _container(docs)
    files = _config_files(docs)
    # Parsed as the model server parses it: an unknown field or a wrong type fails.
    monitoring = tfs_config.parse(
        files[_flag(container, "monitoring_config_file")], "MonitoringConfig"
    )
    assert monitoring.prometheus_config.enable is True
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": _flag(container, "rest_api_port"),
        "prometheus.io/path": monitoring.prometheus_config.path,
    }
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_batching_fits_a_ranking_request_and_the_cpu_request(overlay):
    docs = render(f"overlays/{overlay}")
    container = _container(docs)
    assert _flag(container, "enable_batching") == "true"
    text = _config_files(docs)[_flag(container, "batching_parameters_file")]
    batching = tfs_config.parse(text, "BatchingParameters")
    # One request ranks a query's candidates: a few hundred pairs must fit in one batch.
    assert batching.max_batch_size.value >= 512
    assert 0 < batching.batch_timeout_micros.value <= 10_000
    # One batch thread per requested core.
    assert batching.num_batch_threads.value == int(container["resources"]["requests"]["cpu"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_locked_down(overlay):
    pod = one(render(f"overlays/{overlay}"), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = _container([{"kind": "Deployment", "spec": {"template": {"spec": pod}}}])
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # With a read-only root filesystem, /tmp is the only writable place.
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1


def _image(overlay: str) -> tuple[str, str]:
    repository, tag = _container(render(f"overlays/{overlay}"))["image"].split(":")
    return repository, tag


def test_gpu_overlay_runs_the_gpu_image_on_gpu_nodes():
    docs = render("overlays/gpu")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = _container(docs)
    repository, tag = _image("gpu")
    assert repository == "tensorflow/serving" and tag.endswith("-gpu")
    assert container["resources"]["limits"][GPU] == 1
    assert GPU not in container["resources"].get("requests", {})
    assert resources.GPU_TOLERATION in pod["tolerations"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "nvidia.com/gpu.present": "true"}
    assert one(docs, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 4


def test_cpu_overlay_asks_for_no_gpu():
    text = render_text("overlays/cpu")
    assert GPU not in text and "-gpu" not in text
    pod = one(yaml.safe_load_all(text), "Deployment")["spec"]["template"]["spec"]
    assert "tolerations" not in pod and pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert _image("cpu")[0] == "tensorflow/serving"


def test_both_overlays_pin_the_same_tfserving_release_for_the_exported_graph():
    (_, cpu_tag), (_, gpu_tag) = _image("cpu"), _image("gpu")
    assert re.fullmatch(r"\d+\.\d+\.\d+", cpu_tag), cpu_tag
    assert gpu_tag == f"{cpu_tag}-gpu"
    # The model server must know every op of the graph the pipeline exports.
    serving = tuple(int(x) for x in cpu_tag.split(".")[:2])
    tensorflow = importlib.metadata.version("tensorflow")
    exporting = tuple(int(x) for x in tensorflow.split(".")[:2])
    assert serving >= exporting, (cpu_tag, tensorflow)
