"""The local run's view (local/view.py) and step logs (local/run_pipeline.StepLogs), fed the
lines kfp.local and the steps print."""

import io
import os

from rich.console import Console

from local import view as V
from local.run_pipeline import StepLogs

# What kfp.local prints around a step (with its colours), and what a step logs.
STARTED = "10:00:00.000 - INFO - Executing task \x1b[96m'train'\x1b[0m\n"
PROGRESS = "    [KFP Executor 2026-11-30 10:00:01,000 INFO]: progress: epoch 2/8\n"
FINISHED = "10:00:09.000 - INFO - Task \x1b[96m'train'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m\n"
FAILED = "10:00:09.000 - ERROR - Task 'ingest' finished with status FAILURE\n"


def test_lines_become_events():
    assert V.parse(STARTED, None) == V.Event("train", V.RUNNING)
    assert V.parse(PROGRESS, "train") == V.Event("train", "progress", "epoch 2/8")
    assert V.parse(PROGRESS, None) is None  # progress outside a step has no owner
    assert V.parse(FINISHED, "train") == V.Event("train", V.DONE)
    assert V.parse(FAILED, "ingest") == V.Event("ingest", V.FAILED)
    assert V.parse("    Epoch 2/8\n", "train") is None
    hit = "10:00:00.000 - INFO - Task ingest cache hit (key=0123456789ab); skipping execution."
    assert V.parse(hit, None) == V.Event("ingest", V.CACHED)


def _plain_view() -> tuple[V.StepView, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    return V.StepView(["pretrain", "train", "push"], console, live=False), out


def test_without_a_terminal_each_event_is_one_line():
    view, out = _plain_view()
    for line in (
        "Task pretrain cache hit (key=0123456789ab); skipping execution.",
        "Executing task 'pretrain'",
        "progress: skipped: pretrain_encoder is off",
        "Task 'pretrain' finished with status SUCCESS",
        STARTED,
        PROGRESS,
        FINISHED,
    ):
        event = V.parse(line, view.current)
        view.apply(event)
    view.finish(True, "the model was not blessed")
    lines = out.getvalue().splitlines()
    assert lines.pop(0) == "pretrain   cached: the outputs of an earlier run with the same inputs"
    assert lines[0] == "pretrain   running"
    assert lines[1].startswith("pretrain   skipped in 0 s: pretrain_encoder is off")
    assert lines[2:] == [
        "train      running",
        "train      epoch 2/8",
        "train      done in 0 s",
        "push       skipped  the model was not blessed",
    ]
    states = {s.name: s.state for s in view.steps.values()}
    assert states == {"pretrain": V.SKIPPED, "train": V.DONE, "push": V.SKIPPED}


def test_a_failed_run_leaves_the_rest_waiting():
    view, _ = _plain_view()
    view.apply(V.Event("train", V.RUNNING))
    view.apply(V.Event("train", V.FAILED))
    view.finish(False, "unused")
    assert [s.state for s in view.steps.values()] == [V.WAITING, V.FAILED, V.WAITING]


def test_the_live_table_has_a_row_per_step_and_the_logs():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    view = V.StepView(["ingest", "train"], console, live=True)
    view.apply(V.Event("ingest", V.RUNNING))
    view.apply(V.Event("ingest", "progress", "read 10 rows"))
    view.set_logs("/runs/r/logs")
    console.print(view.render())
    rows = [row.rstrip() for row in out.getvalue().splitlines()]
    assert rows[0].split()[:2] == ["ingest", "running"] and rows[0].endswith("read 10 rows")
    assert rows[1].split() == ["train", "waiting"]
    assert rows[2] == "logs: /runs/r/logs/"


def test_step_logs_wait_for_the_run_directory_then_keep_each_steps_lines(tmp_path):
    root = tmp_path / "root"
    logs = StepLogs(str(root))
    logs.write("pipeline", "Running pipeline\n")
    logs.write("ingest", "Executing task 'ingest'\n")
    assert logs.run_dir is None  # kfp.local has not created the run yet
    run = root / "mlpr-ranking-2026-11-30-10-00-00-000000"
    run.mkdir()
    logs.write("ingest", "    [KFP Executor 2026-11-30 10:00:00,000 INFO]: Got executor_input:\n")
    for line in ("    {\n", '        "inputs": {}\n', "    }\n"):
        logs.write("ingest", line)
    logs.write("ingest", "    ingest: error: 3 of 3 rows could not be used\n")
    logs.write("ingest", "Task 'ingest' finished with status FAILURE\n", own=False)
    logs.close()
    assert logs.run_dir == str(run)
    assert (run / "logs" / "pipeline.log").read_text() == "Running pipeline\n"
    ingest = (run / "logs" / "ingest.log").read_text()
    assert ingest.startswith("Executing task 'ingest'\n") and ingest.endswith("FAILURE\n")
    assert '"inputs": {}' in ingest  # the log keeps everything
    # The tail shown on failure: the step's own lines, without kfp's inputs and report.
    assert logs.tail("ingest") == [
        "Executing task 'ingest'",
        "ingest: error: 3 of 3 rows could not be used",
    ]
    assert logs.path("ingest") == os.path.join(run, "logs", "ingest.log")


def test_the_runner_knows_the_pipelines_name_and_steps():
    import yaml

    import pipeline
    from local import run_pipeline

    assert run_pipeline.PIPELINE_NAME == pipeline.PIPELINE_NAME
    with open(os.path.join(os.path.dirname(pipeline.__file__), "pipeline.yaml")) as fh:
        spec = next(yaml.safe_load_all(fh))
    tasks = set(spec["root"]["dag"]["tasks"]) | set(
        spec["components"]["comp-condition-1"]["dag"]["tasks"]
    )
    assert set(run_pipeline.STEPS) == tasks - {"condition-1"}
