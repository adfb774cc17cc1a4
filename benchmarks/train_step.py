"""The real train step end to end, per fine-tuning mode, beside its model alone on random inputs.

    .venv/bin/python benchmarks/train_step.py --dataset homedepot --queries 3000 \\
        --encoder-preset all-minilm-l6-v2 --modes 0,1,2 --out benchmarks/results/train_step.md

Each mode runs `components.train.training.run_training` (the pipeline's train step: tf.data from
the transformed TFRecords, the text cache, model.fit with early stopping, the .keras file, the
product table and the SavedModel) on the same splits (paper_tables.prepare), first with an
empty text cache, then again with the cache the first run left (a later run over the same
texts). Examples/s counts every example of every epoch run, over the whole step's seconds:
the cache build is divided over the epochs the run made. The phases are reported apart.

The reference, measured in the same process: the same ranker's training step alone
(`cached_ranker` for a frozen or partly fine-tuned encoder) fitted on random inputs of the
same shapes, so the ratio shows what the input pipeline, the cache and the export cost.

Each mode trains with the pipeline's settings (components/train/config.train_config), changed
only by the mode (fine_tune_layers; the first, 0, is the pipeline's), --encoder-preset,
--max-epochs and TRAIN_CHANGES.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import click  # noqa: E402
import numpy as np  # noqa: E402

# What the default run's first mode changes from the pipeline's training settings, and why.
TRAIN_CHANGES = {
    "text_cache_dir": "a cache of each mode's own, built by its first run and read by its second",
}


def mode_config(mode, preset: str, max_epochs: int, cache_dir: str):
    """The TrainConfig of one fine-tuning `mode` (fine_tune_layers): the pipeline's settings
    (train_config) with `preset`, `max_epochs` and the text cache in `cache_dir`."""
    from components.train.config import train_config

    return train_config(
        encoder_preset=preset,
        fine_tune_layers=mode,
        max_epochs=max_epochs,
        text_cache_dir=cache_dir,
    )


def default_train_config():
    """The TrainConfig of the default run's first mode (TRAIN_CHANGES says what it changes)."""
    params = main.make_context("train_step", []).params
    mode = params["modes"].split(",")[0].strip()
    return mode_config(mode, params["encoder_preset"], params["max_epochs"], "<work>/cache")


def run_mode(mode, paths, preset: str, max_epochs: int, cache_dir: str, work: str) -> dict:
    from components.train.training import run_training

    _, tft_dir, transformed = paths
    config = mode_config(mode, preset, max_epochs, cache_dir)
    out = tempfile.mkdtemp(prefix=f"train-{mode}-", dir=work)
    result = run_training(tft_dir, transformed, out, config, verbose=0)
    examples = result.train_examples * result.epochs_run
    cache = result.text_cache or {}
    return {
        "mode": str(mode),
        "epochs": result.epochs_run,
        "train_examples": result.train_examples,
        "seconds": result.seconds,
        "examples_per_second": examples / result.seconds,
        "fit_examples_per_second": examples / max(result.fit_seconds, 1e-9),
        "fit_seconds": result.fit_seconds,
        "export_seconds": result.export_seconds,
        "cache_seconds": cache.get("seconds", 0.0),
        "texts_encoded": cache.get("texts_encoded", 0),
        "texts_per_second": cache.get("texts_encoded", 0) / cache["encode_seconds"]
        if cache.get("encode_seconds")
        else float("nan"),
        "model_dir": out,
        "config": config,
    }


def synthetic_rate(model_dir: str, mode, config, steps: int, lengths) -> float:
    """Examples/s of the same ranker's training step on random inputs of the step's shapes
    (its batch size and learning rate: `config`'s)."""
    import keras

    from contract import schema as S
    from model.ranker import cached_ranker, compile_ranker

    model = keras.saving.load_model(os.path.join(model_dir, "model.keras"), compile=False)
    trained = model if mode == "all" else cached_ranker(model)
    compile_ranker(trained, config.learning_rate)
    batch_size = config.batch_size
    rng = np.random.default_rng(0)
    n = batch_size * steps
    width = model.text_encoder.output_dim
    x = {S.WIDE: rng.standard_normal((n, model.wide_dim)).astype("float32")}
    for column, size in model.vocabulary_sizes.items():
        x[S.vocab_id_name(column)] = rng.integers(0, size, n).astype("int32")
    for side, length in zip(("query", "product"), lengths, strict=True):
        if mode == "all":
            x[f"{side}_token_ids"] = rng.integers(5, 1000, (n, length)).astype("int32")
            x[f"{side}_padding_mask"] = np.ones((n, length), "int32")
        elif model.text_encoder.trained_blocks == 0:
            x[f"{side}_vector"] = rng.standard_normal((n, width)).astype("float32")
        else:
            x[f"{side}_hidden"] = rng.standard_normal((n, length, width)).astype("float32")
            x[f"{side}_mask"] = np.ones((n, length), "int32")
    y = {t: (rng.random((n, 1)) < 0.3).astype("float32") for t in S.DEFAULT_TASKS}
    warm = {k: v[:batch_size] for k, v in x.items()}
    trained.fit(warm, {t: v[:batch_size] for t, v in y.items()}, batch_size=batch_size, verbose=0)
    start = time.monotonic()
    trained.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    return n / (time.monotonic() - start)


@click.command()
@click.option("--dataset", type=click.Choice(["demo", "homedepot"]), default="homedepot")
@click.option("--queries", default=3000, show_default=True)
@click.option("--encoder-preset", default="all-minilm-l6-v2", show_default=True)
@click.option("--modes", default="0,1,2", show_default=True, help="fine_tune_layers values.")
@click.option("--max-epochs", default=8, show_default=True)
@click.option("--synthetic-steps", default=20, show_default=True)
@click.option("--work", default=None, help="Keep the prepared splits here (reused when present).")
@click.option("--out", default=None, help="Also write the Markdown report here.")
def main(dataset, queries, encoder_preset, modes, max_epochs, synthetic_steps, work, out):
    from paper_tables import prepare

    start = time.monotonic()
    work = work or tempfile.mkdtemp(prefix="train-step-")
    examples, tft_dir, transformed, log = prepare(dataset, queries, 0, work)
    paths = (examples, tft_dir, transformed)
    rows = []
    for mode in modes.split(","):
        mode = mode.strip()
        value = mode if mode == "all" else int(mode)
        cache_dir = tempfile.mkdtemp(prefix=f"cache-{mode}-", dir=work)
        runs = [run_mode(value, paths, encoder_preset, max_epochs, cache_dir, work)]
        if mode != "all":  # again, over the cache the first run left
            runs.append(run_mode(value, paths, encoder_preset, max_epochs, cache_dir, work))
        config = runs[0]["config"]
        lengths = _mean_token_lengths(runs[0]["model_dir"], transformed, tft_dir, config)
        synthetic = synthetic_rate(runs[0]["model_dir"], value, config, synthetic_steps, lengths)
        for label, run in zip(("empty cache", "warm cache"), runs, strict=False):
            run.update(cache=label if mode != "all" else "-", synthetic=synthetic)
            shown = {k: v for k, v in run.items() if k not in ("model_dir", "config")}
            click.echo(json.dumps(shown), err=True)
            rows.append(run)
    report = _report(rows, dataset, queries, encoder_preset, max_epochs, start)
    from reports import print_and_save

    print_and_save(report, out)


def _mean_token_lengths(model_dir, transformed, tft_dir, config) -> tuple[int, int]:
    """Mean packed token counts of the train split's queries and product texts, packed to
    `config`'s lengths."""
    import keras_hub
    import tensorflow as tf
    import tensorflow_transform as tft

    from components.train.inputs import read_split, split_files
    from contract import schema as S
    from model.text_preprocessor import TextPreprocessor

    tokenizer = keras_hub.models.Tokenizer.from_preset(os.path.join(model_dir, "encoder_preset"))
    split = read_split(
        split_files(transformed, "train"), tft.TFTransformOutput(tft_dir), S.DEFAULT_TASKS
    )
    preprocessor = TextPreprocessor(tokenizer, config.query_length, config.product_length)
    tokens = preprocessor(
        tf.constant(split[S.QUERY][:2000]), tf.constant(split[S.PRODUCT_TEXT][:2000])
    )
    return tuple(
        max(int(round(float(np.asarray(tokens[f"{s}_padding_mask"]).sum(1).mean()))), 1)
        for s in ("query", "product")
    )


def _report(rows, dataset, queries, preset, max_epochs, start) -> str:
    lines = [
        f"# The train step end to end: MLPR, {preset}, {dataset} ({queries} queries)",
        "",
        f"    .venv/bin/python benchmarks/train_step.py --dataset {dataset} --queries {queries} "
        f"--encoder-preset {preset} --modes {','.join(dict.fromkeys(r['mode'] for r in rows))} "
        f"--max-epochs {max_epochs}",
        "",
        f"{os.cpu_count()} CPUs; {(time.monotonic() - start) / 60:.1f} min in all. Examples/s "
        "counts every example of every epoch over the whole step (cache build, fit, export); "
        "fit examples/s over model.fit alone; the synthetic figure is the same ranker's "
        "training step on random inputs of the same shapes, in the same process.",
        "",
        "| fine_tune_layers | cache | epochs | train examples | step s | cache s | texts encoded "
        "| texts/s | fit s | export s | examples/s (step) | examples/s (fit) "
        "| examples/s (synthetic) | step / synthetic |",
        "|---" * 14 + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['cache']} | {r['epochs']} | {r['train_examples']:,} | "
            f"{r['seconds']:.0f} | {r['cache_seconds']:.0f} | {r['texts_encoded']:,} | "
            f"{r['texts_per_second']:.0f} | {r['fit_seconds']:.0f} | {r['export_seconds']:.0f} | "
            f"{r['examples_per_second']:,.0f} | {r['fit_examples_per_second']:,.0f} | "
            f"{r['synthetic']:,.0f} | {r['examples_per_second'] / r['synthetic']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
