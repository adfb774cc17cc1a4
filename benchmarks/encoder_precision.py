"""What bfloat16 would buy the text encoder on this CPU: texts/s of the embedding pass in
float32 and in Keras' mixed_bfloat16 policy (bf16 matmuls, float32 variables; oneDNN runs them
on AMX/AVX-512-BF16 where the CPU has them), measured in the same run, and what it costs in
ranking quality: the zero-shot cosine's NDCG@5 against Home Depot's human grades with each,
paired over test queries.

    .venv/bin/python benchmarks/encoder_precision.py --work /tmp/hd/w4 --out benchmarks/results/encoder_precision.md

`--work` is a folder `paper_tables.py --dataset homedepot --queries 3000` prepared (its
`examples/`). Every distinct query and product text of the test split is encoded once per
policy, sorted by length and padded per batch of 128, as the train step's text cache does.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import click
import numpy as np


def encode(texts: list[str], side: str, dtype: str, preset: str, length: int) -> tuple:
    """([n, d] unit vectors, seconds of the encoder calls alone) with the `dtype` policy."""
    import keras_hub
    import tensorflow as tf

    from model.encoder import TextEncoder
    from model.presets import resolve_preset
    from model.text_preprocessor import TextPreprocessor

    location = resolve_preset(preset)
    backbone = keras_hub.models.Backbone.from_preset(location, dtype=dtype)
    tokenizer = keras_hub.models.Tokenizer.from_preset(location)
    preprocessor = TextPreprocessor(tokenizer, length, length)
    encoder = TextEncoder(backbone, fine_tune_layers=0)
    run = tf.function(
        lambda ids, mask: encoder({"token_ids": ids, "padding_mask": mask}, training=False),
        input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2,
    )
    empty = tf.zeros([0], tf.string)
    packed = preprocessor(
        *((tf.constant(texts), empty) if side == "query" else (empty, tf.constant(texts)))
    )
    ids = np.asarray(packed[f"{side}_token_ids"], np.int32)
    mask = np.asarray(packed[f"{side}_padding_mask"], np.int32)
    lengths = mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    run(ids[:8, :4], mask[:8, :4])  # trace once
    out = np.zeros([len(texts), encoder.output_dim], np.float32)
    start = time.perf_counter()
    for first in range(0, len(texts), 128):
        rows = order[first : first + 128]
        width = max(int(lengths[rows].max()), 1)
        out[rows] = tf.cast(run(ids[rows, :width], mask[rows, :width]), tf.float32).numpy()
    seconds = time.perf_counter() - start
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12), seconds


@click.command()
@click.option("--work", required=True, help="A folder paper_tables.py prepared for Home Depot.")
@click.option("--queries", default=3000, show_default=True)
@click.option("--preset", default="all-minilm-l6-v2", show_default=True)
@click.option("--out", default=None, help="Also write the report (Markdown) here.")
def main(work: str, queries: int, preset: str, out: str | None) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from paper_tables import human_grades, source_log

    from components.evaluate import references as refs
    from components.evaluate.metrics import ndcg_per_query
    from components.evaluate.stats import paired_comparison
    from contract import schema as S

    log, raw_schema = source_log("homedepot", queries, 0)
    pairs = refs.read_pairs(os.path.join(work, "examples"), raw_schema)
    grades = human_grades(log, "homedepot")
    relevance = np.array(
        [grades[(q, p)] for q, p in zip(pairs[S.QUERY], pairs[S.PRODUCT_ID], strict=True)]
    )
    query_texts = sorted(set(pairs["query_text"]))
    product_texts = sorted(set(pairs["product_text"]))
    results = {}
    for dtype in ("float32", "mixed_bfloat16"):
        q, q_seconds = encode(query_texts, "query", dtype, preset, 16)
        p, p_seconds = encode(product_texts, "product", dtype, preset, 48)
        qi = {t: i for i, t in enumerate(query_texts)}
        pi = {t: i for i, t in enumerate(product_texts)}
        cosine = np.sum(
            q[[qi[t] for t in pairs["query_text"]]] * p[[pi[t] for t in pairs["product_text"]]],
            axis=1,
        )
        per_query = ndcg_per_query(pairs[S.QUERY].to_numpy(), relevance, cosine, 5)
        results[dtype] = {
            "texts_per_second": (len(query_texts) + len(product_texts)) / (q_seconds + p_seconds),
            "cosine": cosine,
            "per_query": per_query,
            "ndcg": float(np.mean(list(per_query.values()))),
        }
        click.echo(f"{dtype}: {results[dtype]['texts_per_second']:.0f} texts/s", err=True)
    base, bf16 = results["float32"], results["mixed_bfloat16"]
    test = paired_comparison(bf16["per_query"], base["per_query"])
    lines = [
        f"# The text encoder in float32 and mixed_bfloat16 ({preset}, CPU)",
        "",
        f"    .venv/bin/python benchmarks/encoder_precision.py --work {work} --queries {queries}",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores. "
        f"{len(query_texts):,} query and {len(product_texts):,} product texts of the Home Depot "
        "test split, each encoded once per policy (sorted by length, batches of 128).",
        "",
        "| policy | texts/s | zero-shot human NDCG@5 |",
        "|---|---|---|",
    ]
    for dtype, r in results.items():
        lines.append(f"| {dtype} | {r['texts_per_second']:.0f} | {r['ndcg']:.4f} |")
    lines += [
        "",
        f"- speed-up: {bf16['texts_per_second'] / base['texts_per_second']:.2f}x",
        f"- largest cosine difference over the {len(pairs):,} test pairs: "
        f"{np.abs(bf16['cosine'] - base['cosine']).max():.4f}",
        f"- NDCG@5, mixed_bfloat16 - float32, paired over {test.queries} queries: "
        f"{test.mean_difference:+.5f} (95% CI [{test.ci_low:+.5f}, {test.ci_high:+.5f}], "
        f"p = {test.p_value:.3g})",
    ]
    report = "\n".join(lines) + "\n"
    from reports import print_and_save

    print_and_save(report, out)


if __name__ == "__main__":
    main()
