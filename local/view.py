"""The live view of a local run: one line per DAG step, with its state, its time and its
latest progress line, redrawn in place on a terminal (rich), or printed one event per line
elsewhere (CI, `| tee`).

The view follows the run's output, line by line: kfp.local's task lines ("Executing task
'train'", "Task 'train' finished with status SUCCESS") give the states, and the steps' own
`progress: ...` lines (components/step_log.py) the progress figures. A step whose last
progress line starts with "skipped:" ends as skipped.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from components.step_log import PROGRESS_PREFIX

WAITING, RUNNING, DONE, CACHED, SKIPPED, FAILED = (
    "waiting", "running", "done", "cached", "skipped", "failed",
)  # fmt: skip
FINISHED = (DONE, CACHED, SKIPPED, FAILED)
STYLES = {
    WAITING: "dim",
    RUNNING: "bold cyan",
    DONE: "green",
    CACHED: "green",
    SKIPPED: "yellow",
    FAILED: "bold red",
}
SKIPPED_PREFIX = "skipped:"
CACHED_NOTE = "the outputs of an earlier run with the same inputs"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_CACHED = re.compile(r"Task '?([\w-]+)'? cache hit")


def plain(line: str) -> str:
    """`line` without terminal colours and its line end."""
    return _ANSI.sub("", line).rstrip("\r\n")


@dataclasses.dataclass
class Step:
    name: str
    state: str = WAITING
    started: float | None = None
    ended: float | None = None
    progress: str = ""

    def seconds(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.ended or now) - self.started


@dataclasses.dataclass(frozen=True)
class Event:
    step: str
    kind: str  # a state, or "progress"
    text: str = ""


def parse(line: str, current: str | None) -> Event | None:
    """What `line` of the run's output says, if anything: a step starting or finishing, or
    the running step's progress."""
    text = plain(line)
    if m := _STARTED.search(text):
        return Event(m.group(1), RUNNING)
    if m := _FINISHED.search(text):
        return Event(m.group(1), DONE if m.group(2) == "SUCCESS" else FAILED)
    if m := _CACHED.search(text):
        return Event(m.group(1), CACHED)
    at = text.find(PROGRESS_PREFIX)
    if at >= 0 and current is not None:
        return Event(current, "progress", text[at + len(PROGRESS_PREFIX) :].strip())
    return None


class StepView:
    """The steps' states; renders them live on a terminal, or prints events as lines."""

    def __init__(self, steps: Iterable[str], console: Console, live: bool, show: bool = True):
        """`live`: redraw in place (a terminal); otherwise print events as lines, when
        `show` (not with --verbose, which prints everything itself)."""
        self.steps = {name: Step(name) for name in steps}
        self.console = console
        self.live = live
        self.show = show
        self.current: str | None = None
        self.logs: str | None = None
        self._live: Live | None = None

    def set_logs(self, directory: str) -> None:
        """Where the step logs are (shown under the steps once known)."""
        self.logs = directory
        if self.show and not self.live:
            self.console.print(f"step logs: {directory}/", markup=False, highlight=False)

    # -- state --------------------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        step = self.steps.setdefault(event.step, Step(event.step))
        now = time.monotonic()
        if event.kind == RUNNING:
            step.state, step.started, self.current = RUNNING, now, event.step
        elif event.kind == CACHED:
            step.state, step.started, step.ended = CACHED, now, now
            step.progress = CACHED_NOTE
        elif event.kind == "progress":
            step.progress = event.text
        else:  # finished
            step.ended = now
            skipped = step.progress.startswith(SKIPPED_PREFIX)
            step.state = SKIPPED if event.kind == DONE and skipped else event.kind
            if skipped:
                step.progress = step.progress[len(SKIPPED_PREFIX) :].strip()
            if self.current == event.step:
                self.current = None
        if self.show and not self.live:
            self._print_event(step, event)
        elif self._live is not None:
            self._live.refresh()

    def finish(self, succeeded: bool, reason_not_run: str) -> None:
        """The run ended: the steps that never started were skipped (a condition was false)
        when it succeeded, and are left waiting when it failed."""
        if succeeded:
            for step in self.steps.values():
                if step.state == WAITING:
                    step.state, step.progress = SKIPPED, reason_not_run
                    if self.show and not self.live:
                        self.console.print(f"{step.name:<10} skipped  {reason_not_run}")

    # -- output -------------------------------------------------------------------------------
    def _print_event(self, step: Step, event: Event) -> None:
        if event.kind == "progress":
            if event.text.startswith(SKIPPED_PREFIX):
                return  # said when the step ends
            self.console.print(f"{step.name:<10} {event.text}", markup=False, highlight=False)
            return
        line = f"{step.name:<10} {step.state}"
        if step.state == CACHED:
            line += f": {CACHED_NOTE}"
        elif step.state in FINISHED and step.seconds(time.monotonic()) is not None:
            line += f" in {step.seconds(time.monotonic()):.0f} s"
            if step.state == SKIPPED and step.progress:
                line += f": {step.progress}"
        self.console.print(line, markup=False, highlight=False)

    def render(self) -> RenderableType:
        now = time.monotonic()
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(width=10, no_wrap=True)
        table.add_column(width=7, no_wrap=True)
        table.add_column(width=7, no_wrap=True, justify="right")
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        for step in self.steps.values():
            seconds = step.seconds(now)
            table.add_row(
                Text(step.name, style="bold"),
                Text(step.state, style=STYLES.get(step.state, "")),
                Text("" if seconds is None else f"{seconds:.0f} s", style="dim"),
                Text(step.progress, overflow="ellipsis"),
            )
        if not self.logs:
            return table
        return Group(table, Text(f"logs: {self.logs}/", style="dim", overflow="fold"))

    def __enter__(self) -> StepView:
        if self.live:
            self._live = Live(
                console=self.console, get_renderable=self.render, refresh_per_second=4
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)
            self._live = None
