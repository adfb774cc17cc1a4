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


def mounted_config_files(docs: list[dict], pod: dict, container: dict) -> dict[str, str]:
    """Mount path of each file that a ConfigMap volume of `pod` (a pod spec, or a KServe
    predictor) gives `container` -> its text, the ConfigMaps taken from `docs`."""
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {}
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source:
            for key, text in config_maps[source["name"]]["data"].items():
                files[f"{mount['mountPath']}/{key}"] = text
    return files
