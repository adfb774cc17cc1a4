"""Served to another shop: does a model trained on one shop's log rank another shop's traffic
at least as well as its encoder's zero-shot cosine does there?

A shop's model meets queries and products it never saw: a new catalog, a new market, or a
second shop served by the same model. Trained on the source log (each seed through the
pipeline's own training code), the model scores every pair of the target log (all its splits;
none of them trained on) through its exported SavedModel, and is compared there with the
no-training references of the target (the zero-shot cosine of the same encoder, BM25,
`lexical_score`), on the target's human grades and on each task's simulated engagement:
NDCG@5, with a one-sided paired t-test over the target's queries of "the model ranks below
the zero-shot cosine" (per-query values averaged over seeds).

The two shops: Home Depot (home improvement) and the demo shop (apparel, furniture, home
goods) through the same Home Depot adapter (`paper_tables.demo_as_homedepot`), so that one
schema serves both.

    MLPR_HOMEDEPOT=../shared/data/homedepot/train.csv.zip python benchmarks/transfer.py \\
        --source homedepot --target demo-homedepot --seeds 0,1,2

Each model trains with the pipeline's settings (components/train/config.train_config): MiniLM
frozen, changed only by --max-epochs, the variant's own changes (paper_tables.all_variants)
and TRAIN_CHANGES.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

import click
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import paper_tables as pt  # noqa: E402

PRESET = "all-minilm-l6-v2"
MODELS = ("mlpr", pt.MLPR_BEFORE, "xgboost")
METRICS = ("human", "click", "atc", "purchase")
# What the default run's MLPR changes from the pipeline's training settings, and why.
TRAIN_CHANGES = {
    "text_cache_dir": "one text cache under the working folder, shared by every model and seed",
}


def model_config(variant, seed: int, max_epochs: int, work: str):
    """The TrainConfig of `variant` (paper_tables.variant_config) at `seed`: the pipeline's
    encoder (PRESET, whose zero-shot cosine is the reference) and `max_epochs`."""
    return pt.variant_config(variant, seed, work, encoder_preset=PRESET, max_epochs=max_epochs)


def default_train_config():
    """The TrainConfig of the default run's first model and seed (TRAIN_CHANGES says what it
    changes)."""
    params = main.make_context("transfer", []).params
    variants = {v.label: v for v in pt.all_variants(PRESET)}
    label = params["models"].split(",")[0].strip()
    seed = int(params["seeds"].split(",")[0])
    return model_config(variants[label], seed, params["max_epochs"], params["work"] or "<work>")


def score_target(variant, seed, source_paths, target_examples, args, work):
    """Train `variant` on the source; its scored target pairs (every split)."""
    from components.evaluate.scoring import score_split
    from components.train.training import run_training
    from contract import layout
    from contract.schema import DEFAULT_TASKS

    config = model_config(variant, seed, args["max_epochs"], work)
    out = tempfile.mkdtemp(prefix="model-", dir=work)
    try:
        run_training(source_paths[1], source_paths[2], out, config, verbose=0)
        saved = os.path.join(out, layout.SAVED_MODEL_DIR)
        return {
            "target": score_split(
                saved, layout.raw_split_pattern(target_examples, "*"), DEFAULT_TASKS
            ),
            "source": score_split(
                saved, layout.raw_split_pattern(source_paths[0], "test"), DEFAULT_TASKS
            ),
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def target_references(examples: str, relevance: dict, work: str) -> dict:
    """The no-training references on every pair of the target: {name: metrics, per_query}."""
    from components.evaluate import references as refs
    from contract import layout
    from contract import schema as S

    schema = S.RawSchema.load(os.path.join(examples, layout.SCHEMA_FILE))
    pairs = refs.read_pairs(examples, schema, "*")
    scores = {
        refs.LEXICAL: refs.lexical_scores(pairs),
        refs.BM25: refs.bm25_scores(pairs, list(pairs[S.TITLE])),
        f"{refs.ZERO_SHOT} {PRESET}": refs.zero_shot_scores(
            pairs, PRESET, os.path.join(work, "text_cache")
        ),
    }
    out = {}
    for name, score in scores.items():
        values, per_query = pt.metrics_of(
            refs.as_scored(pairs, score, schema.task_names), relevance
        )
        out[name] = {"metrics": [values], "per_query": [per_query]}
    return out


def report(results: dict, meta: dict) -> str:
    from components.evaluate.stats import one_sided_p_less, paired_comparison

    zero_shot = f"zero-shot {PRESET}"
    md = [
        f"# Served to another shop: trained on {meta['source']}, ranking {meta['target']}",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Source: {meta['source_data']} (trained on its train split, epochs chosen on its eval "
        f"split). Target: {meta['target_data']}, every pair scored (none trained on). Seeds "
        f"{meta['seeds']}; MiniLM frozen (the default); {meta['cpus']} CPUs; "
        f"{meta['minutes']:.1f} min.",
        "",
        *([meta["settings"], ""] if "settings" in meta else []),
        "## NDCG@5 on the target (mean ± std over seeds)",
        "",
        "| model | " + " | ".join(f"{m}/ndcg@5" for m in METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for label, res in results.items():
        cells = []
        for metric in METRICS:
            values = [m[f"{metric}/ndcg@5"] for m in res["metrics"]]
            cells.append(f"{np.mean(values):.4f} ± {np.std(values):.4f}")
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    md += [
        "",
        "## Against the zero-shot cosine on the target (paired over the target's queries; "
        "per-query NDCG@5 averaged over seeds)",
        "",
        "| model | metric | queries | mean difference | 95% CI | p (two-sided) | "
        "p (one-sided: below the cosine) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, res in results.items():
        if label.startswith(("zero-shot", "bm25", "lexical")):
            continue
        for metric in METRICS:
            cmp = paired_comparison(
                pt.average_per_query([pq[metric] for pq in res["per_query"]]),
                results[zero_shot]["per_query"][0][metric],
            )
            md.append(
                f"| {label} | {metric} | {cmp.queries} | {cmp.mean_difference:+.4f} | "
                f"[{cmp.ci_low:+.4f}, {cmp.ci_high:+.4f}] | {cmp.p_value:.3g} | "
                f"{one_sided_p_less(cmp):.3g} |"
            )
    md += ["", "## In the source shop (its test split), for comparison", ""]
    md += ["| model | " + " | ".join(f"{m}/ndcg@5" for m in METRICS) + " |"]
    md += ["|---" * (len(METRICS) + 1) + "|"]
    for label, res in results.items():
        if "source" not in res:
            continue
        cells = [f"{np.mean([m[f'{k}/ndcg@5'] for m in res['source']]):.4f}" for k in METRICS]
        md.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


@click.command()
@click.option("--source", default="homedepot", show_default=True)
@click.option("--target", default=pt.DEMO_AS_HOMEDEPOT, show_default=True)
@click.option("--source-queries", default=1000, show_default=True)
@click.option("--target-queries", default=600, show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--models", default=",".join(MODELS), show_default=True)
@click.option("--max-epochs", default=8, show_default=True)
@click.option("--out", default=None, help="Default: results/transfer_<source>_to_<target>.")
@click.option("--work", default=None, help="Prepared logs and the text cache (default: temp).")
def main(source, target, source_queries, target_queries, seeds, models, max_epochs, out, work):
    from reports import settings_note

    start = time.monotonic()
    for name in (source, target):
        if name not in ("homedepot", pt.DEMO_AS_HOMEDEPOT):
            raise click.UsageError(f"{name!r}: a shop in the Home Depot format, homedepot or "
                                   f"{pt.DEMO_AS_HOMEDEPOT}")  # fmt: skip
    out = out or os.path.join(HERE, "results", f"transfer_{source}_to_{target}")
    work = work or tempfile.mkdtemp(prefix="transfer-")
    *source_paths, source_log = pt.prepare(source, source_queries, 0, os.path.join(work, "source"))
    target_examples, *_, target_log = pt.prepare(
        target, target_queries, 0, os.path.join(work, "target")
    )
    relevance = pt.human_grades(target_log, target)
    source_relevance = pt.human_grades(source_log, source)
    results = target_references(target_examples, relevance, work)
    variants = {v.label: v for v in pt.all_variants(PRESET)}
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    for label in [m.strip() for m in models.split(",") if m.strip()]:
        variant = variants[label]
        if variant.cosine_feature:
            raise click.UsageError(f"{label!r} needs the cosine column in both shops' logs")
        res = results.setdefault(label, {"metrics": [], "per_query": [], "source": []})
        for seed in seed_list:
            scored = score_target(variant, seed, source_paths, target_examples,
                                  {"max_epochs": max_epochs}, work)  # fmt: skip
            values, per_query = pt.metrics_of(scored["target"], relevance)
            res["metrics"].append(values)
            res["per_query"].append(per_query)
            res["source"].append(pt.metrics_of(scored["source"], source_relevance)[0])
            click.echo(f"{label} seed {seed}: " + ", ".join(
                f"{m} {values[f'{m}/ndcg@5']:.4f}" for m in METRICS), err=True)  # fmt: skip
    meta = {
        "source": source, "target": target, "seeds": seed_list, "cpus": os.cpu_count(),
        "command": "python benchmarks/transfer.py " + " ".join(sys.argv[1:]),
        "source_data": f"{source}, {source_queries} queries",
        "target_data": f"{target}, {target_log['query'].nunique()} queries, "
        f"{len(target_log)} pairs",
        "minutes": (time.monotonic() - start) / 60,
        "settings": settings_note(model_config(variants["mlpr"], 0, max_epochs, work), "MLPR"),
    }  # fmt: skip
    os.makedirs(out, exist_ok=True)
    text = report(results, meta)
    with open(os.path.join(out, "transfer.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump({"meta": meta, "results": results}, fh)
    click.echo(text)


if __name__ == "__main__":
    main()
