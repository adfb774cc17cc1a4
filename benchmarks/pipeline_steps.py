"""Wall time of each pipeline step on the demo shop, run in this process (no kfp overhead).

    .venv/bin/python benchmarks/pipeline_steps.py --queries 600

Prints seconds and rows per second for each step, measured in this run, and the share of the
total, so a change that slows a step shows up next to the others on the same machine.

Training runs with the pipeline's settings (components/train/config.train_config), changed only
by --encoder-preset (with "tiny", the default here, the encoder is fine-tuned: a random encoder
learns only when it trains), --max-epochs, --seed and TRAIN_CHANGES.
"""

import os
import resource
import tempfile
import time

import click

# What the default run changes from the pipeline's training settings, and why.
TRAIN_CHANGES = {
    "encoder_preset": "--encoder-preset tiny: a quick run of every step, offline",
    "fine_tune_layers": "all with tiny: a random encoder learns only when it trains",
}


def run_config(encoder_preset: str, max_epochs: int, seed: int):
    """The TrainConfig of the run: the pipeline's settings (train_config) with
    `encoder_preset` (fine-tuned when "tiny"), `max_epochs` and `seed`."""
    from components.train.config import train_config
    from model.presets import TINY

    tuned = {"fine_tune_layers": "all"} if encoder_preset == TINY else {}
    return train_config(encoder_preset=encoder_preset, max_epochs=max_epochs, seed=seed, **tuned)


def default_train_config():
    """The TrainConfig of the default run (TRAIN_CHANGES says what it changes)."""
    params = main.make_context("pipeline_steps", []).params
    return run_config(params["encoder_preset"], params["max_epochs"], params["seed"])


@click.command()
@click.option("--queries", default=600, show_default=True, help="Demo shop size.")
@click.option("--max-epochs", default=8, show_default=True)
@click.option("--encoder-preset", default="tiny", show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(queries: int, max_epochs: int, encoder_preset: str, seed: int) -> None:
    from reports import settings_note

    from components.evaluate.scoring import compute_metrics, score_split
    from components.ingest import demo_data, job
    from components.train.training import run_training
    from components.transform.transform import run_transform
    from contract import layout
    from contract import schema as S

    work = tempfile.mkdtemp(prefix="mlpr-bench-")
    paths = {k: os.path.join(work, k) for k in ("raw", "examples", "tft", "tx", "model")}
    timings: list[tuple[str, float, int]] = []

    def timed(name, rows, fn):
        """Run fn, record its wall time; `rows` is a count or a function of fn's result."""
        start = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - start
        timings.append((name, seconds, rows(value) if callable(rows) else rows))
        return value

    frame = timed("generate demo", len, lambda: demo_data.generate(queries, seed))
    csv = str(demo_data.write(frame, os.path.join(paths["raw"], "demo.csv")))
    counts = timed(
        "ingest (Beam)",
        len(frame),
        lambda: job.run_ingest(csv, paths["examples"], S.DEMO_SCHEMA),
    )
    timed(
        "transform (TFT)",
        counts.rows_kept,
        lambda: run_transform(
            paths["examples"], paths["tft"], paths["tx"], temp_dir=os.path.join(work, "t")
        ),
    )
    config = run_config(encoder_preset, max_epochs, seed)
    result = timed(
        "train + export",
        counts.splits["train"].rows,
        lambda: run_training(paths["tft"], paths["tx"], paths["model"], config, verbose=0),
    )
    saved_model = os.path.join(paths["model"], layout.SAVED_MODEL_DIR)
    test = layout.raw_split_pattern(paths["examples"], "test")
    metrics = timed(
        "evaluate",
        counts.splits["test"].rows,
        lambda: compute_metrics(score_split(saved_model, test, S.DEFAULT_TASKS)),
    )

    total = sum(t for _, t, _ in timings)
    click.echo(
        f"demo shop: {queries} queries, {len(frame)} rows; encoder {encoder_preset}; "
        f"{result.epochs_run} epochs run (best {result.best_epoch}); {os.cpu_count()} CPUs"
    )
    click.echo(settings_note(config))
    click.echo(f"{'step':<18}{'seconds':>10}{'rows':>10}{'rows/s':>12}{'share':>8}")
    for name, seconds, rows in timings:
        click.echo(
            f"{name:<18}{seconds:>10.2f}{rows:>10}{rows / seconds:>12.0f}{seconds / total:>8.0%}"
        )
    click.echo(f"{'total':<18}{total:>10.2f}")
    click.echo(
        f"train: {result.train_examples * result.epochs_run / result.seconds:.0f} examples/s "
        "(all epochs, including export)"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    click.echo(f"peak RSS of this process: {peak:.0f} MiB")
    click.echo(
        "test metrics: "
        + ", ".join(
            f"{t} AUC {metrics[f'{t}/auc']:.3f} NDCG@5 {metrics[f'{t}/ndcg@5']:.3f}"
            for t in S.DEFAULT_TASKS
        )
    )


if __name__ == "__main__":
    main()
