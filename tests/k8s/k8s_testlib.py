"""Shared helpers of the deployment tests: the pinned tools, rendered kustomizations, and the
TF Serving config messages the python package tensorflow-serving-api does not ship.

Imported by the test modules beside it (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "k8s")
OVERLAYS = ("gpu", "cpu")
# The oldest Kubernetes release still widely run, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.29.0", "latest")


def tool(name: str) -> str:
    """The binary the dev extra installs beside this Python (kubectl, hadolint, shellcheck)."""
    venv_bin = os.path.dirname(sys.executable)
    found = shutil.which(name, path=venv_bin) or shutil.which(name)
    assert found, f"{name} is not installed: run ./dev setup (it comes with the dev extra)"
    return found


@functools.cache
def render_text(kustomization: str) -> str:
    """`kubectl kustomize` of a directory under k8s/, as YAML text."""
    done = subprocess.run(
        [tool("kubectl"), "kustomize", os.path.join(K8S, kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(kustomization: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(render_text(kustomization)) if doc]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@functools.cache
def tfserving_config_messages() -> dict[str, type]:
    """BatchingParameters and MonitoringConfig as TF Serving declares them
    (tensorflow_serving/servables/tensorflow/session_bundle_config.proto and
    tensorflow_serving/config/monitoring_config.proto), so the config files can be parsed
    the way the model server parses them: an unknown field or a wrong type fails."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="mlpr_tests/tfserving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    def message(name: str, fields: list[tuple]) -> None:
        msg = file.message_type.add(name=name)
        for number, field_name, field_type, type_name, label in fields:
            field = msg.field.add(name=field_name, number=number, type=field_type, label=label)
            if type_name:
                field.type_name = type_name

    one_, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    int64_value = ".google.protobuf.Int64Value"
    message(
        "BatchingParameters",
        [
            (1, "max_batch_size", F.TYPE_MESSAGE, int64_value, one_),
            (2, "batch_timeout_micros", F.TYPE_MESSAGE, int64_value, one_),
            (3, "max_enqueued_batches", F.TYPE_MESSAGE, int64_value, one_),
            (4, "num_batch_threads", F.TYPE_MESSAGE, int64_value, one_),
            (5, "thread_pool_name", F.TYPE_MESSAGE, ".google.protobuf.StringValue", one_),
            (6, "allowed_batch_sizes", F.TYPE_INT64, None, many),
            (7, "pad_variable_length_inputs", F.TYPE_BOOL, None, one_),
        ],
    )
    message(
        "PrometheusConfig",
        [(1, "enable", F.TYPE_BOOL, None, one_), (2, "path", F.TYPE_STRING, None, one_)],
    )
    message(
        "MonitoringConfig",
        [
            (1, "prometheus_config", F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", one_),
        ],
    )
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        )
        for name in ("BatchingParameters", "MonitoringConfig")
    }
