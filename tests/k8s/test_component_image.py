"""k8s/image: the component image's Dockerfile passes hadolint, its scripts pass shellcheck,
and it installs the project the way the development environment does (pinned, not root)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import tomllib

from k8s_testlib import ROOT, tool
from packaging.requirements import Requirement

IMAGE = os.path.join(ROOT, "k8s", "image")
DOCKERFILE = os.path.join(IMAGE, "Dockerfile")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    with open(DOCKERFILE, encoding="utf-8") as fh:
        text = re.sub(r"\\\n", " ", fh.read())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _pins(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as fh:
        lines = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    return {
        name.lower().replace("_", "-"): version for name, version in (x.split("==") for x in lines)
    }


def test_hadolint_passes():
    done = subprocess.run(
        [tool("hadolint"), "--no-color", DOCKERFILE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_what_it_should(tmp_path):
    # The check above is real: an unpinned base image and package are reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install --no-cache-dir requests\n")
    done = subprocess.run(
        [tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "DL3007" in done.stdout and "DL3013" in done.stdout


def test_shellcheck_passes_the_build_script_and_dev():
    scripts = [os.path.join(IMAGE, "build.sh"), os.path.join(ROOT, "dev")]
    done = subprocess.run([tool("shellcheck"), *scripts], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert os.access(scripts[0], os.X_OK)


def test_image_is_pinned_installs_the_constraints_and_runs_as_a_user():
    instructions = _instructions()
    (base,) = [args for op, args in instructions if op == "FROM"]
    # The Python the project requires, at an exact patch release.
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert project["requires-python"] == ">=3.11,<3.12"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert 'pip install -c constraints.txt -c k8s/image/cuda-constraints.txt ".[gpu]"' in runs
    assert "tensorflow[and-cuda]==2.21.*" in project["optional-dependencies"]["gpu"]
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1] == "10001:10001"
    assert "--uid 10001" in runs and "--gid 10001" in runs


def test_what_the_image_copies_exists_and_is_in_the_build_context():
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as fh:
        ignore = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # everything else is left out (.venv/, runs/, .git/)
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = []
    for op, args in _instructions():
        if op == "COPY":
            copied += args.split()[:-1]
    assert copied
    # pip installs the project from what was copied: every top-level module it declares.
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        modules = tomllib.load(fh)["tool"]["setuptools"]["py-modules"]
    assert {f"{m}.py" for m in modules} <= set(copied)
    for source in copied:
        assert os.path.exists(os.path.join(ROOT, source)), source
        assert source.rstrip("/") in included, f"{source} is excluded by .dockerignore"


def test_cuda_libraries_satisfy_tensorflows_and_cuda_extra():
    pins = _pins(os.path.join(ROOT, "constraints.txt"))
    cuda = _pins(os.path.join(IMAGE, "cuda-constraints.txt"))
    assert not cuda.keys() & pins.keys()  # one pin per package
    pins |= cuda
    assert importlib.metadata.version("tensorflow") == pins["tensorflow"]
    wanted = [
        Requirement(r)
        for r in importlib.metadata.requires("tensorflow")
        if Requirement(r).marker
        and Requirement(r).marker.evaluate({"extra": "and-cuda"})
        and not Requirement(r).marker.evaluate({"extra": ""})
    ]
    assert len(wanted) >= 10
    for requirement in wanted:
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned"
        assert requirement.specifier.contains(pins[name]), (name, pins[name], requirement)
