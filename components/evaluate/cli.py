"""Command line: print the evaluation report of a local run and write it as HTML.

    python -m components.evaluate report runs/pipeline_root               # the newest run
    python -m components.evaluate report runs/pipeline_root/<run> --html report.html

PATH may be, from the widest to the narrowest:
- a pipeline root (`--pipeline-root` of `./dev demo`): the newest run in it that has an
  evaluation report (by the time the report was written);
- a run directory: `<pipeline root>/<pipeline name>-<timestamp>/`, which kfp.local creates for
  each run, holding one directory per task (`ingest/`, ..., `evaluate/`);
- the evaluate task's directory (`<run>/evaluate/`);
- the blessing artifact directory (`<run>/evaluate/blessing/`), or report.json itself.
On Kubeflow the same files are in the evaluate step's `blessing` artifact.
"""

from __future__ import annotations

import glob
import os
import sys

import click

from components.evaluate.report import REPORT_FILE, EvaluationReport

# Where the evaluate step keeps report.json inside its task directory: its blessing output.
BLESSING_OUTPUT = "blessing"


def _reports_of_run(run_dir: str) -> list[str]:
    # Any task of the run whose blessing output holds a report (the task is named "evaluate"
    # in the MLPR pipeline; other pipelines may name it differently).
    return sorted(glob.glob(os.path.join(glob.escape(run_dir), "*", BLESSING_OUTPUT, REPORT_FILE)))


def find_report(path: str) -> str:
    """The report.json that PATH designates (see the module docstring).

    Raises:
        FileNotFoundError: PATH does not exist or holds no evaluation report; the message
            says what was looked for.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    if os.path.isfile(path):
        return path
    for candidate in (
        os.path.join(path, REPORT_FILE),
        os.path.join(path, BLESSING_OUTPUT, REPORT_FILE),
    ):
        if os.path.isfile(candidate):
            return candidate
    in_run = _reports_of_run(path)
    if len(in_run) > 1:
        tasks = [os.path.basename(os.path.dirname(os.path.dirname(p))) for p in in_run]
        raise FileNotFoundError(
            f"{path} holds several evaluation reports (tasks {tasks}); pass the task's directory"
        )
    if in_run:
        return in_run[0]
    runs = [
        report
        for run in sorted(glob.glob(os.path.join(glob.escape(path), "*", "")))
        for report in _reports_of_run(run)
    ]
    if runs:
        return max(runs, key=os.path.getmtime)
    raise FileNotFoundError(
        f"no evaluation report under {path}: looked for {REPORT_FILE} in it, in "
        f"{BLESSING_OUTPUT}/, in <task>/{BLESSING_OUTPUT}/ (a run directory) and in "
        f"<run>/<task>/{BLESSING_OUTPUT}/ (a pipeline root)"
    )


@click.group()
def cli() -> None:
    """Evaluation reports of MLPR runs."""


@cli.command("report")
@click.argument("path", type=click.Path())
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the HTML report (with its plots) to this file.",
)
def report_command(path: str, html_path: str | None) -> None:
    """Print the evaluation report of PATH: a pipeline root (its newest run), a run
    directory, the evaluate task's directory, its blessing artifact or a report.json."""
    from components.evaluate.report_text import render_text

    try:
        found = find_report(path)
        report = EvaluationReport.read(found)
    except (FileNotFoundError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    click.echo(f"(from {found})", err=True)
    click.echo(render_text(report), nl=False)
    if html_path:
        from components.evaluate.report_html import render_html

        directory = os.path.dirname(os.path.abspath(html_path))
        os.makedirs(directory, exist_ok=True)
        with open(html_path, "w", encoding="utf-8") as f:
            f.write(render_html(report))
        click.echo(f"HTML report written to {html_path}", err=True)
