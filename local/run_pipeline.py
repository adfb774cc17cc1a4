"""Run the MLPR pipeline on this machine through kfp.local, with a live view of its steps.

    ./dev demo [options]            # = .venv/bin/python -m local.run_pipeline [options]
    ./dev demo --auc-floor 0.99     # a stricter gate: the model is not pushed
    ./dev demo --verbose            # every step's full output as it comes

The options are the pipeline's parameters (pipeline_parameters.py), with local defaults
where a local run differs on purpose (the model repository under runs/, CPU batching). The
same DAG as on Kubeflow (k8s/run_pipeline.py starts it there) runs in a child process
(local/execute.py), every step in a subprocess of its own. This process follows that output:

- each step's full output goes to `<run>/logs/<step>.log` (the run directory is kfp.local's
  `<pipeline root>/mlpr-ranking-<time>/`; what comes outside a step goes to pipeline.log);
- on a terminal, one line per step shows its state, its time and its latest progress line
  (local/view.py); elsewhere (CI, a pipe) each event is printed as a line;
- when a step fails, the last lines of its log and the log's path are shown;
- at the end, the summary (local/summary.py).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import click
from rich.console import Console

import pipeline_parameters as P
from components.lifeline import with_this_process
from local import view as V

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIPELINE_NAME = "mlpr-ranking"  # pipeline.PIPELINE_NAME (the run directories' prefix)
STEPS = ("ingest", "transform", "pretrain", "train", "evaluate", "push")
PIPELINE_LOG = "pipeline"  # what is printed outside any step
# How kfp.local indents a step's output, and how kfp's executor prefixes its log lines.
_KFP_INDENT = "    "
_KFP_PREFIX = re.compile(r"^\[KFP Executor [^\]]*\]: ")
TAIL_LINES = 15
NOT_BLESSED = "the model was not blessed"


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _versions(model_base: str, model_name: str) -> set[str]:
    root = os.path.join(model_base, model_name)
    if not os.path.isdir(root):
        return set()
    return {d for d in os.listdir(root) if d.isdigit()}


class StepLogs:
    """Each step's output in `<run>/logs/<step>.log`. The run directory is the one kfp.local
    creates under the pipeline root once the first step writes into it; until it appears,
    lines wait in memory."""

    def __init__(self, pipeline_root: str):
        self.pipeline_root = pipeline_root
        os.makedirs(pipeline_root, exist_ok=True)
        self._before = set(os.listdir(pipeline_root))
        self.run_dir: str | None = None
        self._in_inputs = False
        self._pending: list[tuple[str, str]] = []
        self._files: dict[str, object] = {}
        self._tails: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=TAIL_LINES)
        )

    def _find_run_dir(self) -> str | None:
        new = sorted(
            name
            for name in set(os.listdir(self.pipeline_root)) - self._before
            if name.startswith(PIPELINE_NAME + "-")
        )
        return os.path.join(self.pipeline_root, new[0]) if new else None

    def path(self, step: str) -> str:
        return os.path.join(self.run_dir or "", "logs", f"{step}.log")

    def write(self, step: str, line: str, own: bool = True) -> None:
        """`own`: the line is the step's own output (kept for the tail shown on failure),
        not kfp.local's report after it."""
        text = _KFP_PREFIX.sub("", line.rstrip().removeprefix(_KFP_INDENT))
        if text.endswith("Got executor_input:"):  # kfp's JSON of the step's inputs follows
            self._in_inputs = True
        elif self._in_inputs:
            self._in_inputs = text != "}"
        elif own and text.strip():
            self._tails[step].append(text)
        if self.run_dir is None:
            self.run_dir = self._find_run_dir()
            self._pending.append((step, line))
            if self.run_dir is None:
                return
            pending, self._pending = self._pending, []
            for s, text in pending:
                self._file(s).write(text)
            return
        self._file(step).write(line)

    def _file(self, step: str):
        if step not in self._files:
            os.makedirs(os.path.join(self.run_dir, "logs"), exist_ok=True)
            self._files[step] = open(self.path(step), "a", encoding="utf-8")  # noqa: SIM115
        return self._files[step]

    def tail(self, step: str) -> list[str]:
        return list(self._tails[step])

    def close(self) -> None:
        if self.run_dir is None:  # no step wrote anything: the logs get a directory of their own
            stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
            self.run_dir = os.path.join(self.pipeline_root, f"{PIPELINE_NAME}-{stamp}-no-run")
            for step, line in self._pending:
                self._file(step).write(line)
        for fh in self._files.values():
            fh.close()


def preflight(p: P.PipelineParameters) -> None:
    """ValueError when a parameter is out of range, or the input, the schema, the training
    settings (built as the train step builds them, for the log's tasks) or the pretraining
    settings cannot work, before any step starts."""
    from components.ingest.resolve import resolve_input
    from components.pretrain.pretrain import PretrainConfig
    from components.train.config import STEP_DEFAULTS, train_config
    from contract import schema as S

    p.check()
    given = resolve_input(p.input_data, p.input_format, p.input_encoding, p.schema_uri)
    schema = given.schema if given is not None else S.resolve_schema(p.schema_uri)
    train_config(**{name: getattr(p, name) for name in STEP_DEFAULTS}).for_tasks(schema.task_names)
    if p.pretrain_encoder:
        PretrainConfig(
            encoder_preset=p.encoder_preset, fine_tune_layers=p.pretrain_fine_tune_layers
        )


def _show_failure(console: Console, steps: V.StepView, logs: StepLogs) -> None:
    failed = [s.name for s in steps.steps.values() if s.state == V.FAILED]
    where = failed[0] if failed else PIPELINE_LOG
    what = f"step {where} failed" if failed else "the pipeline failed before its steps ran"
    console.print(f"\nerror: {what}. The last lines of its log:", style="bold red")
    for line in logs.tail(where):
        console.print("  " + line, markup=False, highlight=False)
    console.print(f"Full log: {logs.path(where)}", markup=False, highlight=False)


def run_local(
    p: P.PipelineParameters,
    pipeline_root: str,
    verbose: bool,
    console: Console,
    cache: bool = True,
    retries: int = 0,
) -> int:
    """Run the DAG over `p` and print the view and the summary; the exit status. `cache`:
    steps that cache reuse an earlier run's outputs for the same inputs; `retries`: how often
    a failed step runs again (pipeline.build_pipeline)."""
    from local.summary import format_summary

    before = _versions(p.model_base, p.model_name)
    logs = StepLogs(pipeline_root)
    work = tempfile.mkdtemp(prefix="mlpr-run-")
    outputs_file, run_file = os.path.join(work, "outputs.json"), os.path.join(work, "run.json")
    parameters = {n: getattr(p, n) for n in P.local_parameters()}
    with open(run_file, "w", encoding="utf-8") as fh:
        json.dump(
            {
                "pipeline_root": pipeline_root,
                "outputs": outputs_file,
                "cache": cache,
                "retries": retries,
                "parameters": parameters,
            },
            fh,
        )
    # The orchestrator and every step end when this process does (components/lifeline.py).
    env = with_this_process(dict(os.environ, PYTHONUNBUFFERED="1"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    console.print(
        f"MLPR: running the pipeline locally (kfp.local), every step in a process of its own; "
        f"artifacts and logs under {pipeline_root}/",
        markup=False,
        highlight=False,
    )
    start = time.monotonic()
    steps = V.StepView(STEPS, console, live=console.is_terminal and not verbose, show=not verbose)
    child = subprocess.Popen(
        [sys.executable, "-m", "local.execute", run_file],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        env=env,
    )
    step, own = PIPELINE_LOG, True
    try:
        with steps:
            for line in child.stdout:
                event = V.parse(line, steps.current)
                if event is not None and event.kind in (V.RUNNING, V.CACHED):
                    step, own = event.step, True
                elif event is not None and event.kind in V.FINISHED:
                    own = False  # kfp.local's report on the step follows
                logs.write(step, V.plain(line) + "\n", own=own)
                if logs.run_dir and steps.logs is None:
                    steps.set_logs(os.path.join(logs.run_dir, "logs"))
                if verbose:
                    sys.stdout.write(line)
                if event is not None:
                    steps.apply(event)
            code = child.wait()
            steps.finish(code == 0, NOT_BLESSED)
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
        logs.close()
        shutil.rmtree(work, ignore_errors=True)
        console.print(f"interrupted; the logs so far: {os.path.join(logs.run_dir, 'logs')}/")
        return 130
    logs.close()
    outputs = _read_json(outputs_file) if code == 0 else None
    shutil.rmtree(work, ignore_errors=True)
    if code != 0:
        _show_failure(console, steps, logs)
        return 1
    new_versions = sorted(_versions(p.model_base, p.model_name) - before, key=int)
    # The commands of the summary, as a user types them from where the run was started.
    here = os.getcwd() == ROOT and sys.executable.startswith(ROOT + os.sep)
    python = os.path.relpath(sys.executable) if here else sys.executable
    console.print()
    console.print(
        format_summary(
            outputs, logs.run_dir, p.model_base, p.model_name, new_versions,
            time.monotonic() - start, python=python,
        ),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )  # fmt: skip
    return 0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@P.click_options
@click.option(
    "--freeze-encoder",
    "freeze_encoder",
    is_flag=True,
    help="The same as --fine-tune-layers 0.",
)
@click.option(
    "--pipeline-root",
    default="runs/pipeline_root",
    show_default=True,
    help="Where kfp.local keeps the runs: artifacts, and each step's log in <run>/logs/.",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Print every step's full output as it comes, instead of the live view.",
)
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Reuse an earlier local run's ingest, transform, pretrain and train outputs when "
    "their inputs are the same, as Kubeflow does (input files are compared by path, not "
    "content); --no-cache runs every step.",
)
@click.option(
    "--retries",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="How often a failed step runs again, as the compiled pipeline's retry policy does "
    "on Kubeflow (2). Locally a failure is shown at once: run again, and the finished steps "
    "come from the cache and training resumes from its last epoch (--checkpoint-root).",
)
def main(
    pipeline_root: str, verbose: bool, freeze_encoder: bool, cache: bool, retries: int, **params
) -> None:
    """Run the MLPR pipeline locally (kfp.local) on the demo shop or your logs, with a live
    view of its steps, and print a summary."""
    console = Console(highlight=False, soft_wrap=True)
    if freeze_encoder:
        params["fine_tune_layers"] = "0"
    params["model_base"] = os.path.abspath(params["model_base"])
    if params["checkpoint_root"]:  # the step runs in a folder of its own
        params["checkpoint_root"] = os.path.abspath(params["checkpoint_root"])
    params["serving_base"] = params["serving_base"] or params["model_base"]
    try:
        p = P.PipelineParameters(**params)
        preflight(p)
    except ValueError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    os.makedirs(p.model_base, exist_ok=True)
    sys.exit(run_local(p, os.path.abspath(pipeline_root), verbose, console, cache, retries))


if __name__ == "__main__":
    main()
