"""Command line: one training process, `python -m components.train --transform-dir T
--transformed-dir X --model-dir M [options]`.

What each worker of a multi-worker job runs (components/train/multiworker.py submits it to
Kubeflow Trainer): with TF_CONFIG naming a cluster, the processes train together under
MultiWorkerMirroredStrategy and only the chief writes `--model-dir`. Without TF_CONFIG it
trains alone, on every local GPU. On a bad argument it prints "error: <message>" to stderr
and exits with status 2; when training fails (a worker lost, say), it names the error and
exits with status 1; when the chief's watchdog finds a process frozen or training stopped
(components/train/watchdog.py), it names the process and exits with status 75. The reason is
the last line of standard error: "training failed on <placement>: <reason>".

With `--backup-dir` (a folder every worker shares) each process resumes from the chief's last
backup there, and keeps the heartbeat the chief watches.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import traceback

import click

from components import step_log
from components.step_log import quiet

quiet()  # before TensorFlow loads, which the next imports do
from components.train.config import PRECISIONS, STEP_DEFAULTS  # noqa: E402
from components.train.multiworker import INDEX_ENV, tf_config  # noqa: E402
from model.loss_balancing import BALANCING  # noqa: E402

# The options' defaults: the train step's, the pipeline's (train_config starts from them).
D = STEP_DEFAULTS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--transform-dir", required=True, help="The transform step's graph directory.")
@click.option("--transformed-dir", required=True, help="The transformed splits.")
@click.option("--model-dir", required=True, help="Where the chief writes the model.")
@click.option(
    "--pretrained-dir",
    default="",
    help="The pretrain step's output; empty: start from --encoder-preset.",
)
@click.option("--architecture", default=D["architecture"], show_default=True)
@click.option("--encoder-preset", default=D["encoder_preset"], show_default=True)
@click.option("--fine-tune-layers", default=D["fine_tune_layers"], show_default=True)
@click.option(
    "--text-cache-dir", default=D["text_cache_dir"], help="Reusable text cache; empty: this run's."
)
@click.option(
    "--backup-dir",
    default="",
    help="Where the chief backs training up after every epoch and every worker resumes from "
    "(shared by all workers); empty: no backup.",
)
@click.option(
    "--hang-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="With several workers and --backup-dir: the chief fails the job when a process is "
    "frozen, or no process moves, for this long.",
)
@click.option(
    "--max-epochs", type=click.IntRange(min=1), default=D["max_epochs"], show_default=True
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=D["batch_size"],
    show_default=True,
    help="Examples per replica and step.",
)
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=D["learning_rate"]
)
@click.option("--seed", type=int, default=D["seed"], show_default=True)
@click.option(
    "--precision", type=click.Choice(PRECISIONS), default=D["precision"], show_default=True
)
@click.option(
    "--loss-balancing",
    type=click.Choice(["", *BALANCING]),
    default=D["loss_balancing"],
    help="How the task losses are weighted; empty: the architecture's own.",
)
@click.option(
    "--listwise-tasks",
    default=D["listwise_tasks"],
    help="Tasks trained with the listwise softmax loss, comma-separated (default: none).",
)
@click.option(
    "--region-mask/--no-region-mask",
    default=D["region_mask"],
    help="Masks generated from the market on each task's input and tower (logs with markets).",
)
@click.option(
    "--relevance-task/--no-relevance-task",
    default=D["relevance_task"],
    help="Also learn the engagement relevance label, a task outside the funnel.",
)
@click.option(
    "--select-p-value",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=D["select_p_value"],
    show_default=True,
    help="A trained epoch replaces the untrained model only if it ranks the eval queries "
    "better at this one-sided paired p-value (1: whatever its margin).",
)
@click.option(
    "--chief-address",
    default="",
    help="host:port of the chief, to join a cluster (instead of a TF_CONFIG).",
)
@click.option(
    "--worker-addresses",
    default="",
    help="host:port of each worker, comma-separated, in index order.",
)
@click.option(
    "--task-type",
    type=click.Choice(["chief", "worker"]),
    default="worker",
    show_default=True,
    help="This process's role in that cluster.",
)
@click.option(
    "--task-index",
    type=click.IntRange(min=0),
    envvar=INDEX_ENV,
    default=0,
    show_default=True,
    help=f"This worker's index (default: ${INDEX_ENV}, which the TrainJob's pods carry).",
)
def main(
    transform_dir: str,
    transformed_dir: str,
    model_dir: str,
    pretrained_dir: str,
    architecture: str,
    encoder_preset: str,
    fine_tune_layers: str,
    text_cache_dir: str,
    backup_dir: str,
    hang_seconds: float,
    max_epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    precision: str,
    loss_balancing: str,
    listwise_tasks: str,
    region_mask: bool,
    relevance_task: bool,
    select_p_value: float,
    chief_address: str,
    worker_addresses: str,
    task_type: str,
    task_index: int,
) -> None:
    options = dict(locals())
    from components.train.distribute import failure_reason, placement

    environ = dict(os.environ)
    if chief_address or worker_addresses:
        if "TF_CONFIG" in environ:
            raise click.UsageError("give TF_CONFIG or --chief-address, not both")
        workers = [a for a in worker_addresses.split(",") if a]
        environ["TF_CONFIG"] = tf_config(chief_address, workers, task_type, task_index)
    try:
        where = placement(environ=environ)  # first: a multi-worker strategy precedes TF work
    except ValueError as e:
        raise click.UsageError(str(e)) from None

    from components.train.step import SETTINGS, starting_preset, step_config
    from components.train.training import run_training

    preset = starting_preset(pretrained_dir, encoder_preset) if pretrained_dir else encoder_preset
    settings = {k: v for k, v in options.items() if k in SETTINGS}
    try:
        config = step_config(settings, preset, text_cache_dir)
        config = dataclasses.replace(
            config, backup_dir=backup_dir or None, hang_seconds=hang_seconds
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        result = run_training(transform_dir, transformed_dir, model_dir, config, where=where)
    except Exception as e:  # noqa: BLE001 (the job's reason, on the last line, for the launcher)
        traceback.print_exc()
        reason = failure_reason(e, where.cluster)
        click.echo(f"training failed on {where.describe()}: {reason}", err=True)
        if where.cluster is None:
            sys.exit(1)
        # Not through the interpreter's exit: TensorFlow's teardown waits for the lost peer
        # (its coordination service's shutdown), tens of seconds more.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    summary = {
        "chief": where.is_chief,
        "replicas": result.replicas,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
    }
    click.echo(json.dumps(summary))


if __name__ == "__main__":
    # The progress lines (an epoch done, a backup resumed) on standard output, as a step's.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    step_log.logger.addHandler(handler)
    step_log.logger.setLevel(logging.INFO)
    step_log.logger.propagate = False  # not twice, when a library configures the root logger
    main()
