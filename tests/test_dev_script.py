"""`./dev setup` prints one line per phase and keeps pip's output in .venv/setup.log; a
failing phase shows the tail of that log. `./dev help` lists every task."""

import os
import re
import subprocess
from pathlib import Path

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
