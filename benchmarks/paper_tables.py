"""The paper's Tables 2-4 and Figure 2, reproduced on our data.

    .venv/bin/python benchmarks/paper_tables.py --dataset demo --seeds 0,1,2
    .venv/bin/python benchmarks/paper_tables.py --dataset homedepot --queries 3000 --seeds 0,1,2

Every model is trained on the same splits (prepared once: adapter or demo shop -> ingest ->
transform), for each seed, through the pipeline's own training code, and scored through its
exported SavedModel on the test split. Writes Markdown and CSV into --out:

- Table 2: AUC, NDCG@1 and NDCG@5 per task; XGBoost absolute, the others as % lift over it;
- Table 3: encoder fine-tuned vs frozen, for MLP_MTL and MLPR;
- Table 4: MLP_MTL (frozen encoder) with the stages added one by one up to MLPR;
- paired t-tests over test queries of NDCG@5 (per-query values averaged over seeds): MLPR vs
  XGBoost and vs the best baseline;
- Figure 2 as a table: AUC and NDCG@5 by impression-count percentile group of the test pairs;
- training speed (examples/second) per model.
On Home Depot, NDCG is also computed against the human relevance grades.

Each model trains with the pipeline's settings (components/train/config.train_config), changed
only by the run's options (--encoder-preset, --fine-tune-layers, --max-epochs,
--encoder-learning-rate), the variant's own changes (its label says which) and TRAIN_CHANGES;
the report names the settings MLPR trained with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time

import click
import numpy as np
import pandas as pd

from contract.schema import DEFAULT_TASKS

S_TITLE = "title"
# The demo shop's log through the Home Depot adapter (`demo_as_homedepot`).
DEMO_AS_HOMEDEPOT = "demo-homedepot"
RUNS_FILE = "runs.jsonl"  # one finished (model, seed) run per line, so a long run can resume
# Fields of a run record gathered into one list per model (one entry per seed).
RESULT_FIELDS = ("metrics", "per_query", "groups", "speed", "seconds", "markets")
TABLE2 = ("xgboost", "mlp_single", "mlp_mtl", "esm2", "mmoe", "ple", "aitm", "dcn_v2", "mlpr")
MLPR_TINY = "mlpr (tiny)"
MLPR_POSITION_BIAS = "mlpr (position bias)"
MLPR_ANY = "mlpr (any count)"
XGBOOST_ANY = "xgboost (any count)"
# XGBoost with the zero-shot cosine of the run's encoder as one more ranking feature.
XGBOOST_COSINE = "xgboost (+ cosine)"
COSINE_FEATURE = "encoder_cosine"
MLPR_REGION_MASK = "mlpr (region mask)"  # trained on a log with markets (--markets)
MLPR_RELEVANCE_TASK = "mlpr (relevance task)"  # + the engagement relevance label as a task
MLPR_NO_PRIOR = "mlpr (no prior)"
MLPR_BEFORE = "mlpr (no prior; loss-selected)"
MLPR_LISTWISE = "mlpr (listwise)"  # every task on the softmax loss over its query's list
REFERENCE_PREFIXES = ("lexical_score", "bm25", "zero-shot")
# MLPR with each other loss balancing (model/loss_balancing.py); "mlpr" is "uncertainty".
BALANCING_VARIANTS = {f"mlpr ({b})": b for b in ("gradnorm", "dwa", "fixed")}
# MLPR with the encoder's prior at other weights on each task's logit (RankerConfig.prior_scale).
PRIOR_SCALE_VARIANTS = {f"mlpr (prior scale {s:g})": s for s in (1.0, 2.0, 4.0, 8.0)}
# What the default run's MLPR changes from the pipeline's training settings, and why.
TRAIN_CHANGES = {
    "encoder_preset": "--encoder-preset tiny: the tables were first made with the random "
    "encoder learned from the log (--encoder-preset all-minilm-l6-v2 is the pipeline's)",
    "fine_tune_layers": "--fine-tune-layers all: a random encoder learns only when it trains",
    "text_cache_dir": "one text cache under the working folder, shared by every model and seed",
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One trained configuration: a named architecture with optional RankerConfig changes."""

    label: str
    architecture: str
    changes: tuple = ()  # (field, value) pairs applied to the architecture's RankerConfig
    encoder_preset: str | None = None  # None: the run's --encoder-preset
    train_changes: tuple = ()  # (field, value) pairs applied to the TrainConfig
    # Trained on the log with the encoder's zero-shot cosine as a ranking feature (COSINE_FEATURE).
    cosine_feature: bool = False


def table4_variants() -> list[Variant]:
    """MLP_MTL with a frozen encoder, then each MLPR stage added in the paper's order."""
    frozen = (("fine_tune_layers", 0),)
    experts = (
        ("shared_bottom_units", ()),
        ("multi_gate_experts", True),
        ("specific_experts", True),
    )
    steps = [
        ("mlp_mtl (frozen)", ()),  # the same run as Table 3's
        ("+ uncertainty loss", (("loss_balancing", "uncertainty"),)),
        ("+ specific experts", experts),
        ("+ attention units", (("attention_units", True),)),
        ("+ probability transfer", (("probability_transfer", True),)),
    ]
    variants, changes = [], frozen
    for label, added in steps:
        changes = changes + added
        variants.append(Variant(label, "mlp_mtl", changes))
    variants.append(Variant("+ fine-tuning (= MLPR)", "mlpr"))
    return variants


def all_variants(encoder_preset: str = "tiny") -> list[Variant]:
    variants = [Variant(name, name) for name in TABLE2]
    if encoder_preset != "tiny":  # the reference point of the random, from-scratch encoder
        variants.append(Variant(MLPR_TINY, "mlpr", (("fine_tune_layers", "all"),), "tiny"))
        # The strongest simple baseline: boosted trees given what the encoder knows for free.
        variants.append(Variant(XGBOOST_COSINE, "xgboost", cosine_feature=True))
    variants += [
        Variant("mlp_mtl (frozen)", "mlp_mtl", (("fine_tune_layers", 0),)),
        Variant("mlpr (frozen)", "mlpr", (("fine_tune_layers", 0),)),
        Variant(MLPR_POSITION_BIAS, "mlpr", (("position_buckets", 20),)),
        # Trained on "count > 0" (the binary label) instead of the count per impression.
        Variant(MLPR_ANY, "mlpr", train_changes=(("targets", "any"),)),
        Variant(XGBOOST_ANY, "xgboost", train_changes=(("targets", "any"),)),
        Variant(MLPR_REGION_MASK, "mlpr", (("region_mask", True),)),
        Variant(MLPR_RELEVANCE_TASK, "mlpr", (("relevance_task", True),)),
        # Without the encoder's prior (model/encoder_prior.py), as MLPR was before it.
        Variant(MLPR_NO_PRIOR, "mlpr", (("encoder_prior", False),)),
        # Neither the prior nor the epoch chosen for ranking: MLPR as before both.
        Variant(
            MLPR_BEFORE,
            "mlpr",
            (("encoder_prior", False),),
            train_changes=(("select_on", "val_loss"),),
        ),
        Variant(MLPR_LISTWISE, "mlpr", (("listwise_tasks", tuple(DEFAULT_TASKS)),)),
        *(
            Variant(label, "mlpr", (("loss_balancing", balancing),))
            for label, balancing in BALANCING_VARIANTS.items()
        ),
        *(
            Variant(label, "mlpr", (("prior_scale", scale),))
            for label, scale in PRIOR_SCALE_VARIANTS.items()
        ),
    ]
    seen = {v.label for v in variants}
    variants += [v for v in table4_variants() if v.label not in seen and v.architecture != "mlpr"]
    return variants


PREPARED_FILE = "prepared.json"


def prepare(
    dataset: str,
    queries: int,
    seed: int,
    work: str,
    markets: tuple[str, ...] = (),
    cosine_preset: str | None = None,
) -> tuple[str, str, str, pd.DataFrame]:
    """Raw log -> ingest -> transform, once. Returns (examples, tft, transformed, raw log).
    With `cosine_preset`, the log gets that encoder's zero-shot cosine as one more ranking
    feature (`with_encoder_cosine`). A `work` folder that a finished call with the same
    arguments left is reused as it is."""
    from components.ingest import demo_data, job
    from components.transform.transform import run_transform

    log, schema = source_log(dataset, queries, seed, markets)
    examples, tft_dir, transformed = (os.path.join(work, d) for d in ("examples", "tft", "tx"))
    marker = os.path.join(work, PREPARED_FILE)
    wanted = {"dataset": dataset, "queries": queries, "seed": seed, "rows": len(log)}
    if markets:
        wanted["markets"] = list(markets)
    if cosine_preset:
        wanted["cosine_preset"] = cosine_preset
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as fh:
            found = json.load(fh)
        if found != wanted:
            raise ValueError(f"{work} was prepared for {found}, not {wanted}")
        return examples, tft_dir, transformed, log
    raw = os.path.join(work, "raw.csv")
    os.makedirs(work, exist_ok=True)
    if cosine_preset:
        log, schema = with_encoder_cosine(
            log, schema, cosine_preset, os.path.join(work, "text_cache")
        )
    demo_data.write(log, raw)
    job.run_ingest(raw, examples, schema)
    run_transform(examples, tft_dir, transformed, temp_dir=os.path.join(work, "tmp"))
    with open(marker, "w", encoding="utf-8") as fh:
        json.dump(wanted, fh)
    return examples, tft_dir, transformed, log


def with_encoder_cosine(log: pd.DataFrame, schema, preset: str, cache_dir: str):
    """(log, schema) with COSINE_FEATURE: the cosine of `preset`'s untrained vectors of each
    row's query and product text, read as the model reads them (the query normalised by the
    transform's own function, the product fields joined), as the zero-shot reference scores
    them (components/evaluate/references.py). A shop can give any model this column."""
    from components.evaluate.references import model_texts
    from components.transform.relevance import encoder_similarity
    from contract import schema as S

    queries, products = model_texts(log)
    cosine = encoder_similarity(queries, products, preset, cache_dir)
    feature = S.RankingFeature(COSINE_FEATURE, min_value=-1.0, max_value=1.0)
    schema = dataclasses.replace(schema, ranking_features=(*schema.ranking_features, feature))
    return log.assign(**{COSINE_FEATURE: np.clip(cosine, -1.0, 1.0)}), schema


def demo_as_homedepot(queries: int, seed: int) -> pd.DataFrame:
    """The demo shop (apparel, furniture, home goods) as a Home Depot source table: its
    queries, product ids and titles, and its hidden grade 0-3 as a Home Depot grade 1-3; a
    second shop for the Home Depot adapter, whose catalog and words differ."""
    from components.ingest import demo_data

    shop = demo_data.generate(queries, seed=seed, include_relevance=True)
    return pd.DataFrame(
        {
            "search_term": shop["query"],
            "product_uid": shop["product_id"].astype(str),
            "product_title": shop["title"],
            "relevance": 1.0 + shop["relevance"].to_numpy(float) * 2.0 / 3.0,
        }
    )


def source_log(dataset: str, queries: int, seed: int, markets: tuple[str, ...] = ()):
    """(raw log, its schema): the demo shop of `queries` queries (in `markets`, when given), or
    `queries` Home Depot queries sampled with `seed`, engagement simulated with `seed`."""
    from components.ingest import demo_data
    from contract import schema as S

    if markets and dataset != "demo":
        raise click.UsageError("--markets is for the demo shop, whose markets differ in taste")
    if dataset == "demo":
        log = demo_data.generate(queries, seed=seed, include_relevance=True, markets=markets)
        schema = demo_data.demo_schema(markets)
    elif dataset == DEMO_AS_HOMEDEPOT:
        from components.ingest.adapters import homedepot

        log = homedepot.simulate(demo_as_homedepot(queries, seed), seed=seed)
        schema = homedepot.SCHEMA
    else:
        from components.ingest.adapters import homedepot

        source = os.environ.get(
            "MLPR_HOMEDEPOT", os.path.join("..", "shared", "data", "homedepot", "train.csv.zip")
        )
        log = homedepot.simulate(homedepot.read_source(source), seed=seed)
        keep = (
            log[S.QUERY]
            .drop_duplicates()
            .sample(n=min(queries, log[S.QUERY].nunique()), random_state=seed)
        )
        log = log[log[S.QUERY].isin(set(keep))].reset_index(drop=True)
        schema = homedepot.SCHEMA
    return log, schema


def variant_config(variant: Variant, seed: int, work: str, **run):
    """The TrainConfig of one variant and seed: the pipeline's settings (train_config) with
    the run's changes `run` (e.g. encoder_preset, fine_tune_layers, max_epochs), then the
    variant's own (its encoder, RankerConfig and TrainConfig changes win), and the text cache
    under `work` that every run shares."""
    from components.train.config import train_config

    changes = {**run, **dict(variant.changes), **dict(variant.train_changes)}
    if variant.encoder_preset:
        changes["encoder_preset"] = variant.encoder_preset
    return train_config(
        architecture=variant.architecture,
        seed=seed,
        text_cache_dir=os.path.join(work, "text_cache"),
        **changes,
    )


def run_args(encoder_preset: str, max_epochs: int, fine_tune_layers, encoder_learning_rate):
    """The run's options that change every model's training settings (variant_config's `run`)."""
    from model.encoder import check_fine_tune_layers

    return {
        "encoder_preset": encoder_preset,
        "max_epochs": max_epochs,
        "fine_tune_layers": check_fine_tune_layers(fine_tune_layers),
        "encoder_learning_rate": encoder_learning_rate,
    }


def command_train_config(argv=(), label: str = "mlpr"):
    """The TrainConfig that `paper_tables.py ARGV` trains `label` with at its first seed,
    without preparing data or training (default: the default run's MLPR)."""
    params = main.make_context("paper_tables", list(argv)).params
    variants = {v.label: v for v in all_variants(params["encoder_preset"])}
    seed = [int(s) for s in params["seeds"].split(",") if s.strip()][0]
    args = run_args(
        params["encoder_preset"], params["max_epochs"], params["fine_tune_layers"],
        params["encoder_learning_rate"],
    )  # fmt: skip
    return variant_config(variants[label], seed, params["work"] or "<work>", **args)


def default_train_config():
    """The TrainConfig of the default run's MLPR (TRAIN_CHANGES says what it changes)."""
    return command_train_config()


def train_and_score(variant: Variant, seed: int, paths, args, work: str) -> dict:
    """Train one variant with one seed; per-pair predictions on the test split + speed."""
    from components.evaluate.scoring import score_split
    from components.train.training import run_training
    from contract import layout

    examples, tft_dir, transformed = paths
    config = variant_config(variant, seed, work, **args)
    out = tempfile.mkdtemp(prefix="model-", dir=work)
    result = run_training(tft_dir, transformed, out, config, verbose=0)
    scored = score_split(
        os.path.join(out, layout.SAVED_MODEL_DIR),
        layout.raw_split_pattern(examples, "test"),
        DEFAULT_TASKS,
    )
    shutil.rmtree(out, ignore_errors=True)  # ~0.5 GB a model: dozens of runs fill a disk
    return {
        "scored": scored,
        "examples_per_second": result.train_examples
        * result.epochs_run
        / max(result.seconds, 1e-9),
        "seconds": result.seconds,
    }


def human_grades(log: pd.DataFrame, dataset: str) -> dict | None:
    """{(query, product id): human relevance grade} of a log through the Home Depot adapter
    (its `relevance` column), else None; for a pair that comes more than once, the grade of
    its first row, the one ingest keeps."""
    from contract import schema as S

    if dataset == "demo" or "relevance" not in log:
        return None
    grades: dict = {}
    # The first copy of a duplicated pair, as ingest keeps it (later copies are dead-lettered).
    for q, p, r in zip(log[S.QUERY], log[S.PRODUCT_ID], log["relevance"], strict=True):
        grades.setdefault((q, str(p)), float(r))
    return grades


def metrics_of(scored, relevance: dict | None) -> tuple[dict, dict]:
    """({metric: value}, {task: {query: ndcg@5}}) for one scored test split."""
    from components.evaluate.metrics import auc, ndcg_at_k, ndcg_per_query

    values, per_query = {}, {}
    queries = np.asarray(scored.query)
    for task in DEFAULT_TASKS:
        labels, preds = scored.labels[task], scored.predictions[task]
        values[f"{task}/auc"] = auc(labels, preds)
        for k in (1, 5):
            values[f"{task}/ndcg@{k}"] = ndcg_at_k(queries, labels, preds, k).mean
        per_query[task] = ndcg_per_query(queries, labels, preds, 5)
    if relevance is not None:
        grades = np.array(
            [relevance[(q, p)] for q, p in zip(scored.query, scored.product_id, strict=True)]
        )
        for k in (1, 5):
            values[f"human/ndcg@{k}"] = ndcg_at_k(queries, grades, scored.score, k).mean
        per_query["human"] = ndcg_per_query(queries, grades, scored.score, 5)
    return values, per_query


def by_market(scored) -> dict:
    """{market: {"<task>/auc", "<task>/ndcg@5", "queries"}} of a split with markets ({} without)."""
    from components.evaluate.metrics import auc, ndcg_at_k

    if scored.market is None or len({m for m in scored.market if m}) < 2:
        return {}
    out = {}
    for market in sorted({m for m in scored.market if m}):
        rows = scored.market == market
        queries = np.asarray(scored.query)[rows]
        out[market] = {"queries": int(len(set(queries)))}
        for task in DEFAULT_TASKS:
            labels, preds = scored.labels[task][rows], scored.predictions[task][rows]
            out[market][f"{task}/auc"] = auc(labels, preds)
            out[market][f"{task}/ndcg@5"] = ndcg_at_k(queries, labels, preds, 5).mean
    return out


def by_impression_group(scored) -> dict:
    """AUC and NDCG@5 of the click task in the impression-count percentile groups."""
    from components.evaluate.metrics import auc, ndcg_at_k

    impressions = np.asarray(scored.impressions, dtype=float)
    low, high = np.percentile(impressions, [25, 75])
    groups = {
        "0-25%": impressions <= low,
        "25-75%": (impressions > low) & (impressions <= high),
        "75-100%": impressions > high,
    }
    out = {}
    for name, mask in groups.items():
        q = np.asarray(scored.query)[mask]
        y, p = scored.labels["click"][mask], scored.predictions["click"][mask]
        out[name] = {
            "pairs": int(mask.sum()),
            "auc": auc(y, p),
            "ndcg@5": ndcg_at_k(q, y, p, 5).mean,
        }
    return out


def reference_results(examples: str, raw_schema, relevance, preset: str, cache: str) -> dict:
    """Results (one entry each) of the untrained references on the same test pairs."""
    from components.evaluate import references as refs

    pairs = refs.read_pairs(examples, raw_schema)
    catalog = [
        title
        for split in ("train", "eval")
        for title in refs.read_pairs(examples, raw_schema, split)[S_TITLE]
    ]
    scorers = {
        refs.LEXICAL: lambda: refs.lexical_scores(pairs),
        refs.BM25: lambda: refs.bm25_scores(pairs, catalog),
        f"{refs.ZERO_SHOT} {preset}": lambda: refs.zero_shot_scores(pairs, preset, cache),
    }
    out = {}
    for label, score in scorers.items():
        begin = time.monotonic()
        scored = refs.as_scored(pairs, score(), raw_schema.task_names)
        values, per_query = metrics_of(scored, relevance)
        out[label] = {
            "metrics": [values],
            "per_query": [per_query],
            "groups": [by_impression_group(scored)],
            "speed": [float("nan")],
            "seconds": [time.monotonic() - begin],
        }
        click.echo(f"{label}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()), err=True)
    return out


def load_runs(path: str, setup: dict) -> dict:
    """Finished runs of the same setup from a runs.jsonl file, keyed by (label, seed)."""
    runs: dict = {}
    if not os.path.exists(path):
        return runs
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if record["setup"] != setup:
                raise click.UsageError(
                    f"{path} holds runs of another setup ({record['setup']}); "
                    "use another --out or drop --resume"
                )
            runs[(record["label"], record["seed"])] = record
    return runs


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.array(values, dtype=float)
    return float(np.nanmean(arr)), float(np.nanstd(arr))


def average_per_query(runs: list[dict]) -> dict:
    """{query: value} averaged over runs (seeds), on the queries every run has."""
    keys = set.intersection(*(set(r) for r in runs))
    return {q: float(np.mean([r[q] for r in runs])) for q in keys}


def paired_rows(
    results: dict, labels: list[str], tasks: list[str], column: str, names: dict | None = None
) -> list[str]:
    """A table of paired t-tests over test queries of each of `labels` against "mlpr", per
    task (NDCG@5; per-query values averaged over seeds), its first column titled `column` and
    holding `names[label]` (default: the label)."""
    from components.evaluate.stats import paired_comparison

    rows = [
        f"| {column} | task | queries | mean difference | 95% CI | p-value |",
        "|---|---|---|---|---|---|",
    ]
    for label in labels:
        for task in tasks:
            res = paired_comparison(
                average_per_query([pq[task] for pq in results[label]["per_query"]]),
                average_per_query([pq[task] for pq in results["mlpr"]["per_query"]]),
            )
            rows.append(
                f"| {(names or {}).get(label, label)} | {task} | {res.queries} | "
                f"{res.mean_difference:+.4f} | [{res.ci_low:+.4f}, {res.ci_high:+.4f}] | "
                f"{res.p_value:.3g} |"
            )
    return rows


def market_section(results: dict, keys: list[str]) -> list[str]:
    """MLPR with the region mask against MLPR without it, on a log with markets: the metrics,
    paired tests over queries, the seed spread of MLPR's NDCG@5, and NDCG@5 per market."""
    from components.evaluate.stats import paired_comparison

    def mean_std(label: str, key: str) -> str:
        mean, std = _mean_std([m[key] for m in results[label]["metrics"]])
        return f"{mean:.4f} ± {std:.4f}"

    md = [
        "## Markets: MLPR with the region mask against MLPR without it (absolute)",
        "",
        "| model | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for label in ("mlpr", MLPR_REGION_MASK):
        md.append(f"| {label} | " + " | ".join(mean_std(label, k) for k in keys) + " |")
    md += [
        "",
        "Paired t-tests over test queries, NDCG@5 (per-query values averaged over seeds; "
        "positive: the region mask ranks better), beside the standard deviation of MLPR's "
        "NDCG@5 over seeds:",
        "",
        "| task | queries | mean difference | 95% CI | p-value | MLPR seed std |",
        "|---|---|---|---|---|---|",
    ]
    for task in DEFAULT_TASKS:
        res = paired_comparison(
            average_per_query([pq[task] for pq in results[MLPR_REGION_MASK]["per_query"]]),
            average_per_query([pq[task] for pq in results["mlpr"]["per_query"]]),
        )
        std = _mean_std([m[f"{task}/ndcg@5"] for m in results["mlpr"]["metrics"]])[1]
        md.append(
            f"| {task} | {res.queries} | {res.mean_difference:+.4f} | "
            f"[{res.ci_low:+.4f}, {res.ci_high:+.4f}] | {res.p_value:.3g} | {std:.4f} |"
        )
    markets = sorted({m for runs in results["mlpr"]["markets"] for m in runs})
    if markets:
        md += [
            "",
            "NDCG@5 per market (mean over seeds; the region mask's, then MLPR's):",
            "",
            "| market | queries | " + " | ".join(f"{t}/ndcg@5" for t in DEFAULT_TASKS) + " |",
            "|---|---|" + "---|" * len(DEFAULT_TASKS),
        ]
        for market in markets:

            def mean(label: str, key: str, market=market) -> float:
                return float(np.nanmean([r[market][key] for r in results[label]["markets"]]))

            cells = [
                f"{mean(MLPR_REGION_MASK, f'{t}/ndcg@5'):.4f} / {mean('mlpr', f'{t}/ndcg@5'):.4f}"
                for t in DEFAULT_TASKS
            ]
            queries = results["mlpr"]["markets"][0][market]["queries"]
            md.append(f"| {market} | {queries} | " + " | ".join(cells) + " |")
    return [*md, ""]


def write_report(results: dict, meta: dict, out: str) -> str:
    """Markdown + CSV of the tables; returns the Markdown."""
    from components.evaluate.stats import paired_comparison

    os.makedirs(out, exist_ok=True)
    metric_keys = [k for k in next(iter(results.values()))["metrics"][0] if "/" in k]
    # The tasks of the paired tests: the funnel's, and the human grades when the data has them.
    tasks = [*DEFAULT_TASKS, *(["human"] if "human/ndcg@5" in metric_keys else [])]
    rows = []
    for label, res in results.items():
        for key in metric_keys:
            mean, std = _mean_std([m[key] for m in res["metrics"]])
            rows.append(
                {
                    "model": label,
                    "metric": key,
                    "mean": mean,
                    "std": std,
                    "seeds": len(res["metrics"]),
                }
            )
    frame = pd.DataFrame(rows)
    frame.to_csv(os.path.join(out, "metrics.csv"), index=False)

    def cell(label: str, key: str, relative_to: str | None) -> str:
        vals = [m[key] for m in results[label]["metrics"]]
        if relative_to is None:
            mean, std = _mean_std(vals)
            return f"{mean:.4f} ± {std:.4f}"
        base = np.nanmean([m[key] for m in results[relative_to]["metrics"]])
        mean, std = _mean_std([(v / base - 1) * 100 for v in vals])
        return f"{mean:+.2f}% ± {std:.2f}"

    def table(labels: list[str], keys: list[str], relative_to: str | None, absolute: str | None):
        if relative_to not in results:  # e.g. --models without xgboost: absolute values
            relative_to = None
        lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for label in labels:
            if label not in results:
                continue
            rel = None if label == absolute else relative_to
            lines.append(f"| {label} | " + " | ".join(cell(label, k, rel) for k in keys) + " |")
        return "\n".join(lines)

    t2_keys = [f"{t}/{m}" for t in DEFAULT_TASKS for m in ("auc", "ndcg@1", "ndcg@5")]
    md = [f"# Paper tables on {meta['dataset']}", "", f"Command: `{meta['command']}`", ""]
    md += [
        f"Data: {meta['data']}. Seeds: {meta['seeds']}. Encoder: {meta['encoder_preset']}, "
        f"max {meta['max_epochs']} epochs with early stopping. {meta['cpus']} CPUs; "
        f"total {meta['minutes']:.1f} min.",
        "",
    ]
    if "settings" in meta:  # the training settings, against the pipeline's
        md += [meta["settings"], ""]
    md += [
        "## Table 2: models (XGBoost absolute; others % lift over XGBoost, mean ± std over seeds)"
        if "xgboost" in results
        else "## Table 2: models (absolute, mean ± std over seeds)",
        "",
    ]
    md += [table(list(TABLE2), t2_keys, "xgboost", "xgboost"), ""]
    if "human/ndcg@5" in metric_keys:
        md += ["NDCG against the human relevance grades (ranking score):", ""]
        md += [table(list(TABLE2), ["human/ndcg@1", "human/ndcg@5"], "xgboost", "xgboost"), ""]
    references = [label for label in results if label.startswith(REFERENCE_PREFIXES)]
    if references:
        ref_keys = [f"{t}/ndcg@5" for t in DEFAULT_TASKS]
        ref_keys += ["human/ndcg@5"] if "human/ndcg@5" in metric_keys else []
        md += [
            "## References without training, beside the trained models (absolute; NDCG@5)",
            "",
            "Each reference ranks a query's products by one score: the `lexical_score` "
            "feature, BM25 of the query against the title, or the cosine of the untrained "
            "encoder's query and product-text vectors (zero-shot).",
            "",
        ]
        trained = [m for m in ("xgboost", XGBOOST_COSINE, MLPR_TINY, "mlpr") if m in results]
        md += [table(references + trained, ref_keys, None, None), ""]
    variants = (
        MLPR_TINY,
        MLPR_NO_PRIOR,
        MLPR_BEFORE,
        MLPR_LISTWISE,
        MLPR_POSITION_BIAS,
        MLPR_RELEVANCE_TASK,
        MLPR_ANY,
        XGBOOST_ANY,
        XGBOOST_COSINE,
    )
    variants = [m for m in variants if m in results]
    if variants:
        keys = t2_keys + (["human/ndcg@5"] if "human/ndcg@5" in metric_keys else [])
        md += ["## MLPR variants beside MLPR (absolute)", ""]
        md += [table([m for m in ("mlpr", *variants) if m in results], keys, None, None), ""]
        if "mlpr" in results:
            md += [
                "Paired t-tests over test queries, NDCG@5 of each against MLPR (per-query values "
                "averaged over seeds; positive: the variant ranks better):",
                "",
                *paired_rows(results, variants, tasks, "variant"),
                "",
            ]
    if MLPR_REGION_MASK in results and "mlpr" in results:
        md += market_section(results, t2_keys)
    balanced = [label for label in BALANCING_VARIANTS if label in results]
    if balanced and "mlpr" in results:
        keys = t2_keys + (["human/ndcg@5"] if "human/ndcg@5" in metric_keys else [])
        md += [
            "## Loss balancing: MLPR's uncertainty weighting (mlpr) against GradNorm, Dynamic "
            "Weight Average and fixed weights of 1 (absolute)",
            "",
            table(["mlpr", *balanced], keys, None, None),
            "",
            "Paired t-tests over test queries, NDCG@5 of each against uncertainty weighting "
            "(per-query values averaged over seeds; positive: the other balancing ranks better):",
            "",
            *paired_rows(results, balanced, tasks, "balancing", names=BALANCING_VARIANTS),
            "",
        ]
    md += ["## Table 3: encoder fine-tuned vs frozen (absolute)", ""]
    md += [table(["mlp_mtl (frozen)", "mlp_mtl", "mlpr (frozen)", "mlpr"], t2_keys, None, None), ""]
    md += ["## Table 4: adding MLPR's stages to MLP_MTL (absolute)", ""]
    md += [
        table(
            [v.label if v.architecture != "mlpr" else "mlpr" for v in table4_variants()],
            t2_keys,
            None,
            None,
        ),
        "",
    ]

    md += ["## Paired t-tests over test queries (NDCG@5, per-query values averaged over seeds)", ""]
    md += [
        "| comparison | task | queries | mean difference | 95% CI | p-value |",
        "|---|---|---|---|---|---|",
    ]
    baselines = [m for m in TABLE2 if m not in ("mlpr", "xgboost") and m in results]
    for task in tasks if "mlpr" in results else ():
        key = f"{task}/ndcg@5"
        best = max(
            baselines,
            key=lambda m: np.nanmean([x[key] for x in results[m]["metrics"]]),
            default="xgboost",
        )
        mlpr = average_per_query([pq[task] for pq in results["mlpr"]["per_query"]])
        for other in dict.fromkeys(
            (
                "xgboost",
                XGBOOST_COSINE,
                best,
                MLPR_TINY,
                MLPR_POSITION_BIAS,
                MLPR_ANY,
                XGBOOST_ANY,
                *references,
            )  # fmt: skip
        ):
            if other not in results:
                continue
            res = paired_comparison(
                mlpr, average_per_query([pq[task] for pq in results[other]["per_query"]])
            )
            md.append(
                f"| MLPR vs {other} | {task} | {res.queries} | {res.mean_difference:+.4f} | "
                f"[{res.ci_low:+.4f}, {res.ci_high:+.4f}] | {res.p_value:.3g} |"
            )
    md += ["", "## Figure 2: click task by impression-count percentile group (mean over seeds)", ""]
    md += ["| model | group | pairs | AUC | NDCG@5 |", "|---|---|---|---|---|"]
    for label in ("xgboost", "mlp_mtl", "mlpr"):
        if label not in results:
            continue
        for group in ("0-25%", "25-75%", "75-100%"):
            entries = [g[group] for g in results[label]["groups"]]
            md.append(
                f"| {label} | {group} | {entries[0]['pairs']} | "
                f"{np.nanmean([e['auc'] for e in entries]):.4f} | "
                f"{np.nanmean([e['ndcg@5'] for e in entries]):.4f} |"
            )
    md += ["", "## Training speed on this machine (examples/second, all epochs incl. export)", ""]
    md += ["| model | examples/s | seconds per run |", "|---|---|---|"]
    for label, res in results.items():
        md.append(f"| {label} | {np.mean(res['speed']):.0f} | {np.mean(res['seconds']):.0f} |")
    text = "\n".join(md) + "\n"
    with open(os.path.join(out, "tables.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


@click.command()
@click.option(
    "--dataset",
    type=click.Choice(["demo", "homedepot", DEMO_AS_HOMEDEPOT]),
    default="demo",
    show_default=True,
    help=f"{DEMO_AS_HOMEDEPOT}: the demo shop through the Home Depot adapter.",
)
@click.option(
    "--queries", default=600, show_default=True, help="Demo size, or Home Depot queries sampled."
)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--max-epochs", default=8, show_default=True)
@click.option("--encoder-preset", default="tiny", show_default=True)
@click.option("--models", default="", help="Comma-separated labels to run (default: all).")
@click.option(
    "--out", default=None, help="Output folder (default benchmarks/results/paper_tables_<dataset>)."
)
@click.option(
    "--fine-tune-layers",
    default="all",
    show_default=True,
    help='Encoder layers the neural models train: "all", or the top k ("0": frozen, cached). '
    "The (frozen) variants always use 0.",
)
@click.option(
    "--encoder-learning-rate",
    type=float,
    default=None,
    help="Learning rate of the encoder's trained layers (default: the head's, 1e-3).",
)
@click.option("--resume", is_flag=True, help="Keep the finished runs in <out>/runs.jsonl.")
@click.option(
    "--work",
    default=None,
    help="Keep the prepared splits and the text cache here and reuse them (default: a new "
    "temporary folder).",
)
@click.option(
    "--markets",
    default="",
    help="Demo only: comma-separated markets whose shoppers differ in taste (e.g. us,de,jp); "
    "run 'mlpr (region mask)' beside 'mlpr' to compare.",
)
def main(
    dataset,
    queries,
    seeds,
    max_epochs,
    encoder_preset,
    models,
    out,
    fine_tune_layers,
    encoder_learning_rate,
    resume,
    work,
    markets,
) -> None:
    from reports import settings_note

    from contract import layout
    from contract import schema as S

    start = time.monotonic()
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    out = out or os.path.join(os.path.dirname(__file__), "results", f"paper_tables_{dataset}")
    work = work or tempfile.mkdtemp(prefix=f"paper-{dataset}-")
    market_names = tuple(m.strip() for m in markets.split(",") if m.strip())
    examples, tft_dir, transformed, log = prepare(dataset, queries, 0, work, market_names)
    relevance = human_grades(log, dataset)
    wanted = {m.strip() for m in models.split(",") if m.strip()}
    variants = [v for v in all_variants(encoder_preset) if not wanted or v.label in wanted]
    args = run_args(encoder_preset, max_epochs, fine_tune_layers, encoder_learning_rate)
    setup = {"dataset": dataset, "queries": queries, **args}
    if market_names:
        setup["markets"] = list(market_names)
    os.makedirs(out, exist_ok=True)
    runs_path = os.path.join(out, RUNS_FILE)
    done = load_runs(runs_path, setup) if resume else {}
    if not resume:
        open(runs_path, "w").close()  # a fresh log of finished runs
    # The untrained references first (they need no seeds), then the trained models.
    results: dict = reference_results(
        examples, S.RawSchema.load(os.path.join(examples, layout.SCHEMA_FILE)), relevance,
        encoder_preset, os.path.join(work, "text_cache"),
    )  # fmt: skip
    paths = {False: (examples, tft_dir, transformed)}
    if any(v.cosine_feature for v in variants):  # the same log with the cosine as a feature
        paths[True] = prepare(
            dataset, queries, 0, os.path.join(work, "cosine"), market_names, encoder_preset
        )[:3]
    # Seeds outermost: a run cut short still has every model for the first seeds.
    for seed in seed_list:
        for variant in variants:
            if (variant.label, seed) in done:
                continue
            run = train_and_score(variant, seed, paths[variant.cosine_feature], args, work)
            values, per_query = metrics_of(run["scored"], relevance)
            record = {
                "setup": setup,
                "label": variant.label,
                "seed": seed,
                "metrics": values,
                "per_query": per_query,
                "groups": by_impression_group(run["scored"]),
                "markets": by_market(run["scored"]),
                "speed": run["examples_per_second"],
                "seconds": run["seconds"],
            }
            with open(runs_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            done[(variant.label, seed)] = record
            click.echo(
                f"{variant.label} seed {seed}: "
                + ", ".join(
                    f"{k} {v:.4f}" for k, v in values.items() if k.endswith(("auc", "ndcg@5"))
                ),
                err=True,
            )
    for variant in variants:
        for seed in seed_list:
            record = done[(variant.label, seed)]
            res = results.setdefault(variant.label, {k: [] for k in RESULT_FIELDS})
            for field in RESULT_FIELDS:
                res[field].append(record.get(field, {}))
    meta = {
        "dataset": dataset,
        "command": "python benchmarks/paper_tables.py " + " ".join(sys.argv[1:]),
        "data": f"{len(log)} pairs, {log[S.QUERY].nunique()} queries",
        "seeds": seed_list,
        "encoder_preset": encoder_preset,
        "max_epochs": max_epochs,
        "cpus": os.cpu_count(),
        "minutes": (time.monotonic() - start) / 60,
        "settings": settings_note(variant_config(Variant("mlpr", "mlpr"), 0, work, **args), "MLPR"),
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "run.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
    click.echo(write_report(results, meta, out))


if __name__ == "__main__":
    main()
