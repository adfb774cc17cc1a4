"""The ranker's upper network (the scorer: interactions, experts, towers) in float32 and in
Keras' mixed_bfloat16, on one request's worth of candidates.

    .venv/bin/python benchmarks/scorer_precision.py --model DIR/model.keras \\
        --out benchmarks/results/scorer_precision.md

The scorer of a trained ranker (`model.keras`, e.g. from `benchmarks/serving_profile.py`'s
work folder) is rebuilt under the `mixed_bfloat16` policy with the same weights (float32
variables, bfloat16 compute: oneDNN's AMX / AVX-512-BF16 kernels where the CPU has them) and
both are timed as tf.functions on the same `--candidates` rows (the pre-computed path's
inputs: one query vector, the candidates' product vectors, wide features, categorical ids),
median of `--runs`, measured in this run. Also prints how far the bfloat16 probabilities and
scores move and how often the order of two candidates flips; issue 22 keeps a lower precision
only where NDCG@5 moves by less than 0.002: `serving_precision.py` measures that on the export.
"""

from __future__ import annotations

import os
import sys
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scorer_inputs(ranker, candidates: int, seed: int) -> dict:
    from contract import schema as S
    from model.scorer import PRODUCT_EMBEDDING, QUERY_EMBEDDING, categorical_input_names

    rng = np.random.default_rng(seed)
    dim = ranker.ranker_config.projection_dim
    query = rng.normal(size=(1, dim)).astype(np.float32)
    inputs = {
        QUERY_EMBEDDING: np.repeat(query, candidates, axis=0),
        PRODUCT_EMBEDDING: rng.normal(size=(candidates, dim)).astype(np.float32),
        S.WIDE: rng.normal(size=(candidates, ranker.wide_dim)).astype(np.float32),
    }
    for name, column in zip(categorical_input_names(), S.CATEGORICAL_COLUMNS, strict=True):
        size = ranker.vocabulary_sizes[column]
        inputs[name] = rng.integers(0, size, candidates).astype(np.int32)
    markets = ranker.vocabulary_sizes.get(S.MARKET, 1)
    inputs[S.MARKET_ID] = rng.integers(0, markets, candidates).astype(np.int32)
    return inputs


def _median_ms(fn, inputs, runs: int) -> float:
    for _ in range(5):
        fn(inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(inputs)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


@click.command()
@click.option("--model", "model_path", required=True, help="A trained ranker's model.keras.")
@click.option("--candidates", default=100, show_default=True)
@click.option("--runs", default=300, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default=None, help="Also write the report (Markdown) here.")
def main(model_path, candidates, runs, seed, out) -> None:
    import keras
    import tensorflow as tf
    from reports import print_and_save

    import model.ranker  # noqa: F401  (registers the ranker and its layers)
    from contract import schema as S
    from model.scorer import build_scorer

    ranker = keras.saving.load_model(model_path, compile=False)
    scorer = ranker.scorer
    inputs = {k: tf.constant(v) for k, v in scorer_inputs(ranker, candidates, seed).items()}
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        low = build_scorer(ranker.ranker_config, ranker.wide_dim, ranker.vocabulary_sizes)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    low.set_weights(scorer.get_weights())
    results = {}
    outputs = {}
    for name, net in (("float32", scorer), ("mixed_bfloat16", low)):
        fn = tf.function(lambda x, net=net: net(x, training=False))
        results[name] = _median_ms(fn, inputs, runs)
        outputs[name] = {
            t: np.asarray(fn(inputs)[t], np.float32).reshape(-1) for t in S.DEFAULT_TASKS
        }
    high, bf16 = outputs["float32"], outputs["mixed_bfloat16"]
    worst = max(float(np.abs(high[t] - bf16[t]).max()) for t in S.DEFAULT_TASKS)
    score_high = sum(high[t] for t in S.DEFAULT_TASKS)
    score_low = sum(bf16[t] for t in S.DEFAULT_TASKS)
    pairs = np.triu_indices(candidates, 1)
    flips = np.mean(
        np.sign(score_high[pairs[0]] - score_high[pairs[1]])
        != np.sign(score_low[pairs[0]] - score_low[pairs[1]])
    )
    lines = [
        f"# The scorer in float32 and mixed_bfloat16: {candidates} candidates, "
        f"{os.cpu_count()} CPUs",
        "",
        f"    .venv/bin/python benchmarks/scorer_precision.py --model {model_path}",
        "",
        f"Model: {ranker.ranker_config.to_dict().get('name', 'mlpr')}, expert units "
        f"{list(ranker.ranker_config.expert_units)}, projection "
        f"{ranker.ranker_config.projection_dim}, wide {ranker.wide_dim}.",
        "",
        "| compute | p50 ms (tf.function, this run) |",
        "|---|---|",
        *(f"| {name} | {ms:.2f} |" for name, ms in results.items()),
        "",
        f"bfloat16 is {results['float32'] / results['mixed_bfloat16']:.2f}x float32's speed. "
        f"Largest change of a task probability: {worst:.4f}; pairs of candidates whose order "
        f"(sum of the task probabilities) flips: {flips:.2%}.",
    ]
    print_and_save("\n".join(lines) + "\n", out)


if __name__ == "__main__":
    main()
