"""Training throughput of MLPR and MLP_MTL (examples/second) on whatever Keras backend is set.

    KERAS_BACKEND=jax python benchmarks/train_throughput.py --encoder base --out result.md
    .venv/bin/python benchmarks/train_throughput.py --encoder tiny

The model code uses `keras.ops` only, so this runs where TensorFlow is absent (a GPU machine with
JAX or PyTorch): it builds and compiles each ranker with the train step's own
`model.ranker.build_ranker` and `compile_ranker`, and fits it on random token ids and features
of the train step's shapes. Data loading and tokenisation are left out:
this measures the model's training step, the part a GPU changes.

Encoders: `tiny` (the offline preset's architecture, 2 x 64), `minilm` (the shape of the
`all-minilm-l6-v2` preset: 6 layers x 384, 12 heads) and `base` (DistilBERT-base's, 6 layers x
768, 12 heads), all with random weights in place of the configuration's encoder preset.

Each ranker is built from the pipeline's training settings (components/train/config.
train_config: its RankerConfig, text lengths and learning rate), changed only by the
architecture (--models), --batch-size, --seed and TRAIN_CHANGES. The model computes in float32
(the pipeline's "auto" precision would take mixed_bfloat16 on recent GPUs).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import click  # noqa: E402
import numpy as np  # noqa: E402

# What the default run changes from the pipeline's training settings, and why.
TRAIN_CHANGES = {
    "fine_tune_layers": "all: the encoder's whole training step, the part a GPU changes most "
    "(the pipeline's frozen encoder trains at MLP speed over cached outputs)",
}

ENCODERS = {
    # name: (num_layers, num_heads, hidden_dim, intermediate_dim, vocabulary_size)
    "tiny": (2, 2, 64, 128, 3000),
    "minilm": (6, 12, 384, 1536, 30522),
    "base": (6, 12, 768, 3072, 30522),
}


def _backbone(encoder: str, max_length: int, seed: int):
    import keras_hub

    layers, heads, hidden, intermediate, vocabulary = ENCODERS[encoder]
    return keras_hub.models.DistilBertBackbone(
        vocabulary_size=vocabulary,
        num_layers=layers,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=intermediate,
        max_sequence_length=max_length,
    )


def _batch(n: int, vocabulary: int, wide_dim: int, config, vocab_sizes: dict, rng):
    from contract import schema as S

    def text(length):
        lengths = rng.integers(2, length + 1, size=n)
        mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
        ids = rng.integers(5, vocabulary, size=(n, length)).astype("int32") * mask
        return ids, mask

    q_ids, q_mask = text(config.query_length)
    p_ids, p_mask = text(config.product_length)
    x = {
        "query_token_ids": q_ids,
        "query_padding_mask": q_mask,
        "product_token_ids": p_ids,
        "product_padding_mask": p_mask,
        S.WIDE: rng.standard_normal((n, wide_dim)).astype("float32"),
    }
    for column, size in vocab_sizes.items():
        x[S.vocab_id_name(column)] = rng.integers(0, size, size=n).astype("int32")
    # Funnel-consistent labels: atc only after a click, purchase only after atc.
    click_ = rng.random(n) < 0.3
    atc = click_ & (rng.random(n) < 0.3)
    purchase = atc & (rng.random(n) < 0.5)
    y = {
        t: v.astype("float32")
        for t, v in zip(S.DEFAULT_TASKS, (click_, atc, purchase), strict=True)
    }
    return x, y


def measure_config(architecture_name: str, batch_size: int, seed: int):
    """The TrainConfig of one measured ranker: the pipeline's settings (train_config) with
    `architecture_name`, `batch_size`, `seed` and TRAIN_CHANGES."""
    from components.train.config import train_config

    return train_config(
        architecture=architecture_name, batch_size=batch_size, seed=seed, fine_tune_layers="all"
    )


def default_train_config():
    """The TrainConfig of the default run's first ranker (TRAIN_CHANGES says what it changes)."""
    params = main.make_context("train_throughput", []).params
    name = params["models"].split(",")[0]
    return measure_config(name, params["batch_size"], params["seed"])


def measure(
    architecture_name: str, encoder: str, steps: int, warmup: int, batch_size: int, seed: int
):
    """(examples/second, seconds of the first, compiling, step) of `steps` timed train steps."""
    import keras

    from contract import schema as S
    from model.encoder import TextEncoder
    from model.ranker import build_ranker, compile_ranker

    keras.utils.set_random_seed(seed)
    config = measure_config(architecture_name, batch_size, seed)
    ranker = config.ranker_config
    wide_dim = len(S.DEMO_SCHEMA.ranking_features)
    vocab_sizes = {c: 200 for c in S.CATEGORICAL_COLUMNS}
    backbone = _backbone(encoder, max(config.query_length, config.product_length), seed)
    text_encoder = TextEncoder(
        backbone, pooling=ranker.pooling, fine_tune_layers=ranker.fine_tune_layers
    )
    model = build_ranker(
        ranker,
        text_encoder,
        wide_dim=wide_dim,
        vocabulary_sizes=vocab_sizes,
        query_length=config.query_length,
        product_length=config.product_length,
    )
    compile_ranker(model, config.learning_rate, config.encoder_learning_rate, model.text_encoder)
    rng = np.random.default_rng(seed)
    x, y = _batch(
        batch_size * (steps + warmup), ENCODERS[encoder][4], wide_dim, config, vocab_sizes, rng
    )
    first = {k: v[: batch_size * warmup] for k, v in x.items()}
    first_y = {k: v[: batch_size * warmup] for k, v in y.items()}
    rest = {k: v[batch_size * warmup :] for k, v in x.items()}
    rest_y = {k: v[batch_size * warmup :] for k, v in y.items()}
    start = time.perf_counter()
    model.fit(first, first_y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    history = model.fit(rest, rest_y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    loss = float(history.history["loss"][-1])
    if not np.isfinite(loss):
        raise RuntimeError(f"{architecture_name}/{encoder}: loss is {loss} after training")
    return batch_size * steps / seconds, compile_seconds, loss, model.count_params()


def _device() -> str:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return ", ".join(sorted({str(d.device_kind) for d in jax.devices()}))
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return gpus[0].name if gpus else "cpu"
    return "unknown"


@click.command()
@click.option(
    "--encoder",
    "encoders",
    default="tiny",
    show_default=True,
    help="Comma-separated: tiny, minilm, base.",
)
@click.option("--models", default="mlpr,mlp_mtl", show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--steps", default=30, show_default=True, help="Timed train steps per model.")
@click.option("--warmup", default=3, show_default=True, help="Untimed steps (compilation).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default=None, help="Also write the Markdown table here.")
def main(encoders, models, batch_size, steps, warmup, seed, out) -> None:
    import keras

    backend = keras.backend.backend()
    device = _device()
    lines = [
        f"# Training throughput: Keras backend {backend}, device {device}",
        "",
        f"    KERAS_BACKEND={backend} python benchmarks/train_throughput.py --encoder {encoders} "
        f"--models {models} --batch-size {batch_size} --steps {steps} --warmup {warmup}",
        "",
        "| model | encoder | examples/s | first fit incl. compile (s) | parameters | loss |",
        "|---|---|---|---|---|---|",
    ]
    for encoder in encoders.split(","):
        if encoder not in ENCODERS:
            raise click.BadParameter(f"unknown encoder {encoder!r}; choose from {sorted(ENCODERS)}")
        for name in models.split(","):
            rate, compile_seconds, loss, params = measure(
                name, encoder, steps, warmup, batch_size, seed
            )
            row = (
                f"| {name} | {encoder} | {rate:,.0f} | {compile_seconds:.1f} | {params:,} "
                f"| {loss:.3f} |"
            )
            click.echo(row, err=True)
            lines.append(row)
    report = "\n".join(lines) + "\n"
    from reports import print_and_save

    print_and_save(report, out)


if __name__ == "__main__":
    main()
