"""What a train step killed in its last epoch costs, with its epoch backup and without.

    .venv/bin/python benchmarks/train_resume.py --dataset homedepot --queries 3000 \\
        --out benchmarks/results/train_resume_homedepot.md

The pipeline's train step (`components.train.training.run_training`, MiniLM frozen, the text
cache warm as a retry finds it) runs in child processes on the same splits
(paper_tables.prepare):

1. once to fill the text cache (not timed: a retry finds the cache its first attempt wrote);
2. uninterrupted: the step's time, and the epochs it runs (E);
3. SIGKILLed half-way through epoch E, as a preempted pod dies: the time it had run;
4. the retry of (3), over the same backup folder: it resumes after epoch E - 1.

Without a backup the retry would redo (2) whole, so the fault would cost what (3) ran plus
nothing saved; with it, what (3) ran plus (4) minus (2). The resumed model is compared with the
uninterrupted one, variable by variable.

Each run trains with the pipeline's settings (components/train/config.train_config), changed
only by TRAIN_CHANGES.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import click  # noqa: E402

TRAIN_CHANGES = {
    "text_cache_dir": "the cache of this run's texts, filled once before the timed runs",
    "backup_dir": "the epoch backup the killed run writes and its retry resumes from",
}

# One training in a child process. argv: tft, transformed, out, settings (JSON), and
# "kill:<epoch>:<seconds>" to SIGKILL itself <seconds> after the backup of <epoch> (0-based)
# is written, or "-". Prints the result as JSON.
_CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    from components.train import backup
    from components.train.config import train_config
    from components.train.training import run_training

    tft, transformed, out, settings, kill = sys.argv[1:6]
    if kill != "-":
        _, epoch, seconds = kill.split(":")
        save = backup.EpochBackup.save

        def saving_then_dying(self, done, *args, **kwargs):
            save(self, done, *args, **kwargs)
            if done == int(epoch):
                threading.Timer(float(seconds), os.kill, (os.getpid(), signal.SIGKILL)).start()

        backup.EpochBackup.save = saving_then_dying
    result = run_training(tft, transformed, out, train_config(**json.loads(settings)), verbose=0)
    print(json.dumps({"epochs_run": result.epochs_run, "fit_seconds": result.fit_seconds,
                      "seconds": result.seconds, "best_epoch": result.best_epoch}))
    """
)


def settings(work: str, max_epochs: int) -> dict:
    return {
        "max_epochs": max_epochs,
        "text_cache_dir": os.path.join(work, "cache"),
        "backup_dir": os.path.join(work, "backup"),
    }


def default_train_config():
    """The TrainConfig of the default run (TRAIN_CHANGES says what it changes)."""
    from components.train.config import train_config

    params = main.make_context("train_resume", []).params
    return train_config(**settings("<work>", params["max_epochs"]))


def train(paths, out: str, config: dict, kill: str = "-") -> tuple[float, int, dict | None]:
    """(seconds, exit status, result) of one training in a child process."""
    _, tft_dir, transformed = paths
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, tft_dir, transformed, out, json.dumps(config), kill],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.monotonic() - start
    if done.returncode == 0:
        return seconds, 0, json.loads(done.stdout.strip().splitlines()[-1])
    if kill == "-":
        raise RuntimeError(f"training failed:\n{done.stderr[-3000:]}")
    return seconds, done.returncode, None


def weights(model_dir: str) -> dict:
    """The variables of an exported model's .keras file, by their path in its weights file."""
    import io
    import zipfile

    import h5py

    from contract import layout

    with zipfile.ZipFile(os.path.join(model_dir, layout.KERAS_MODEL_FILE)) as archive:
        data = io.BytesIO(archive.read("model.weights.h5"))
    found = {}
    with h5py.File(data, "r") as h5:
        h5.visititems(
            lambda name, item: (
                found.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
            )
        )
    return found


def same_weights(a: str, b: str) -> tuple[bool, float]:
    """Whether two exported models hold the same variables, and the largest difference."""
    import numpy as np

    first, second = weights(a), weights(b)
    if first.keys() != second.keys():
        return False, float("inf")
    diffs = [float(np.max(np.abs(first[k] - second[k]))) if first[k].size else 0.0 for k in first]
    return max(diffs) == 0.0, max(diffs)


@click.command()
@click.option("--dataset", default="homedepot", show_default=True)
@click.option("--queries", default=3000, show_default=True)
@click.option("--max-epochs", default=8, show_default=True)
@click.option("--work", default=None, help="Keep the prepared splits here (reused when present).")
@click.option("--out", default=None, help="Write the report here (Markdown).")
def main(dataset, queries, max_epochs, work, out) -> None:
    from paper_tables import prepare

    started = time.monotonic()
    work = work or tempfile.mkdtemp(prefix="train-resume-")
    paths = prepare(dataset, queries, 0, os.path.join(work, "data"))[:3]
    config = settings(work, max_epochs)
    train(paths, os.path.join(work, "warm-up"), config)  # fills the text cache

    whole, _, result = train(paths, os.path.join(work, "whole"), config)
    epochs = result["epochs_run"]
    per_epoch = result["fit_seconds"] / epochs
    print(f"uninterrupted: {whole:.1f} s, {epochs} epochs ({per_epoch:.1f} s each)", flush=True)
    if epochs < 2:
        sys.exit("the uninterrupted run trained one epoch: nothing to resume")
    kill = f"kill:{epochs - 2}:{per_epoch / 2:.3f}"
    killed, code, _ = train(paths, os.path.join(work, "retried"), config, kill)
    print(f"killed half-way through epoch {epochs}: exit {code} after {killed:.1f} s", flush=True)
    with open(os.path.join(config["backup_dir"], "current", "state.json"), encoding="utf-8") as fh:
        resumed_after = json.load(fh)["epoch"] + 1
    retry, _, again = train(paths, os.path.join(work, "retried"), config)
    equal, max_diff = same_weights(os.path.join(work, "whole"), os.path.join(work, "retried"))

    report = textwrap.dedent(
        f"""\
        # A train step killed in its last epoch: {dataset}, {queries} queries, MiniLM frozen

            .venv/bin/python benchmarks/train_resume.py --dataset {dataset} --queries {queries} --max-epochs {max_epochs}

        {os.cpu_count()} CPUs; {(time.monotonic() - started) / 60:.1f} min in all. Each run is the
        train step in a child process with the text cache warm (as a retry finds it); the
        pipeline's settings, with the backup and the cache in the run's folder.

        | run | seconds | epochs trained |
        |---|---|---|
        | uninterrupted | {whole:.1f} | {epochs} (an epoch {per_epoch:.1f} s of model.fit) |
        | SIGKILLed half-way through epoch {epochs} (exit {code}) | {killed:.1f} | {epochs - 1} whole |
        | its retry, resumed after epoch {resumed_after} | {retry:.1f} | {again["epochs_run"] - resumed_after} |

        - The fault cost {killed + retry - whole:.1f} s with the backup (killed run + retry -
          uninterrupted), against {killed:.1f} s without it (the retry would redo the
          uninterrupted run whole): {whole - retry:.1f} s saved, {(whole - retry) / whole:.0%} of
          the step.
        - The retry redid {again["epochs_run"] - resumed_after} epoch(s); its model equals the
          uninterrupted one: {"yes, to the bit" if equal else f"no (largest difference {max_diff:.3g})"}.
        """
    )
    print(report)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(report)


if __name__ == "__main__":
    main()
