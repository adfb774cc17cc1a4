"""What domain pretraining of the text encoder buys MLPR: NDCG@5 per task, with and without.

    .venv/bin/python benchmarks/pretrain_gain.py --dataset demo --seeds 0,1,2

The splits are prepared once (adapter or demo shop -> ingest -> transform). For each seed the
encoder is pretrained on the train split (components/pretrain, from --encoder-preset: "tiny"
pretrains from scratch, offline), then MLPR is trained twice through the pipeline's own code,
once starting from the pretrained preset and once from the raw preset (`--frozen`: a third
time, from the pretrained preset with the encoder frozen), and each is scored through its
exported SavedModel on the test split. Prints AUC and NDCG@5 per task, the
mean over seeds, the per-seed differences, a paired t-test over test queries (per-query
NDCG@5 averaged over seeds, pretrained vs raw) and the retrieval metrics of the pretraining.
On Home Depot, NDCG@5 of the ranking score is also computed against the human grades.

`--pretrain-queries N` (Home Depot) pretrains on a larger log than the ranker trains on, as a
shop does when it has months of logs: N queries sampled the same way, prepared on their own.
Splits go by a hash of the query, so the ranker's eval and test queries are in the larger
log's eval and test splits and never among the pretraining's train queries (checked).

`--work DIR` keeps the splits, presets and models in DIR; a later run with the same settings
reuses what an earlier one finished there (checked against the stored configurations), so an
interrupted run resumes and `--frozen` can be added to a finished one.

MLPR trains with the pipeline's settings (components/train/config.train_config), changed only
by --encoder-preset (or the pretrained preset), --fine-tune-layers (0 in the frozen arm),
--max-epochs and TRAIN_CHANGES; the report names the raw arm's settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile

import click
import numpy as np

from contract.schema import DEFAULT_TASKS

# What the default run's raw arm changes from the pipeline's training settings, and why.
TRAIN_CHANGES = {
    "encoder_preset": "--encoder-preset tiny: pretraining from scratch, offline and quick "
    "(--encoder-preset all-minilm-l6-v2 is the pipeline's)",
    "fine_tune_layers": "--fine-tune-layers all: a random encoder learns only when it trains",
    "text_cache_dir": "one text cache under the working folder, shared by the arms and seeds",
}


def larger_log(dataset: str, queries: int, pretrain_queries: int, log, work: str):
    """((transform dir, transformed dir), description) of the larger pretraining log, after
    checking that none of its train queries is an eval or test query of the ranker's log."""
    from paper_tables import prepare

    from components.ingest.split import normalize_query, split_of
    from contract import schema as S

    if dataset != "homedepot":
        raise click.BadParameter(
            "only Home Depot has a larger log to sample", param_hint="--pretrain-queries"
        )
    if pretrain_queries <= queries:
        raise click.BadParameter(
            f"must be above --queries ({queries}), got {pretrain_queries}",
            param_hint="--pretrain-queries",
        )
    _, tft_dir, transformed, bigger = prepare(
        dataset, pretrain_queries, 0, os.path.join(work, "pretrain-log")
    )
    held_out = {normalize_query(q) for q in log[S.QUERY] if split_of(q) != "train"}
    train = {normalize_query(q) for q in bigger[S.QUERY] if split_of(q) == "train"}
    if held_out & train:
        raise RuntimeError(f"{len(held_out & train)} held-out queries in the pretraining log")
    ranker_train = {normalize_query(q) for q in log[S.QUERY]} - held_out
    note = (
        f"the train split of {bigger[S.QUERY].nunique():,} queries ({len(train):,} train "
        f"queries, {len(ranker_train & train):,} of them the ranker's {len(ranker_train):,}; "
        f"none of the ranker's {len(held_out):,} eval and test queries)"
    )
    return (tft_dir, transformed), note


@click.command()
@click.option("--dataset", type=click.Choice(["demo", "homedepot"]), default="demo")
@click.option("--queries", default=600, show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--encoder-preset", default="tiny", show_default=True)
@click.option("--pretrain-epochs", default=3, show_default=True)
@click.option(
    "--hard-negatives",
    is_flag=True,
    help="Pretrain with each query's shown-but-not-engaged products as the first negatives.",
)
@click.option(
    "--pretrain-queries",
    default=0,
    show_default=True,
    help="Home Depot: pretrain on this many queries (the ranker's and more); 0: the ranker's.",
)
@click.option(
    "--frozen",
    is_flag=True,
    help="Also train MLPR with the pretrained encoder frozen (not fine-tuned).",
)
@click.option(
    "--fine-tune-layers",
    default="all",
    show_default=True,
    help="The ranker's fine_tune_layers in every arm ('all', or the top k; 0 frozen).",
)
@click.option(
    "--pretrain-fine-tune-layers",
    default="all",
    show_default=True,
    help="What pretraining trains: 'all', or the top k blocks over cached lower ones "
    "(0: the projections alone).",
)
@click.option(
    "--pretrain-encoder-learning-rate",
    type=float,
    default=None,
    help="Learning rate of the encoder's pretrained blocks (default: the projections' rate).",
)
@click.option("--pretrain-learning-rate", default=5e-4, show_default=True)
@click.option("--pretrain-ratio", default=20, show_default=True, help="Negatives per positive.")
@click.option("--max-epochs", default=8, show_default=True)
@click.option(
    "--work",
    default=None,
    help="Working folder (default: a new temporary one). Splits, presets and models that an "
    "earlier run with the same settings finished there are reused.",
)
@click.option("--out", default=None, help="Also write the report (Markdown) here.")
def main(
    dataset,
    queries,
    seeds,
    encoder_preset,
    pretrain_epochs,
    hard_negatives,
    pretrain_queries,
    frozen,
    fine_tune_layers,
    pretrain_fine_tune_layers,
    pretrain_encoder_learning_rate,
    pretrain_learning_rate,
    pretrain_ratio,
    max_epochs,
    work,
    out,
) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from paper_tables import human_grades, metrics_of, prepare, reference_results, source_log
    from reports import settings_note

    from components.evaluate.scoring import score_split
    from components.pretrain.pretrain import PretrainConfig
    from contract import layout

    work = work or tempfile.mkdtemp(prefix="mlpr-pretrain-gain-")
    click.echo(f"working folder {work}", err=True)
    examples, tft_dir, transformed, log = prepare(dataset, queries, 0, work)
    relevance = human_grades(log, dataset)
    tasks = DEFAULT_TASKS + (("human",) if relevance else ())
    pretrain_data, pretrain_note = (tft_dir, transformed), "the ranker's train split"
    if pretrain_queries:
        pretrain_data, pretrain_note = larger_log(dataset, queries, pretrain_queries, log, work)
    click.echo(f"pretraining on {pretrain_note}", err=True)
    test = layout.raw_split_pattern(examples, "test")
    references = reference_results(
        examples,
        source_log(dataset, queries, 0)[1],
        relevance,
        encoder_preset,
        os.path.join(work, "text-cache"),
    )
    arms = ["raw", "pretrained"] + (["pretrained, frozen"] if frozen else [])
    rows, retrieval, per_query = [], [], {arm: [] for arm in arms}
    for seed in [int(s) for s in seeds.split(",")]:
        # The pretraining data is part of the name: a preset (and the models over it) is
        # reused only for the same log.
        log_tag = f"-log{pretrain_queries}" if pretrain_queries else ""
        preset_dir = os.path.join(work, f"pretrained{log_tag}-{seed}")
        pretrain_config = PretrainConfig(
            encoder_preset=encoder_preset,
            epochs=pretrain_epochs,
            hard_negatives=hard_negatives,
            fine_tune_layers=pretrain_fine_tune_layers,
            learning_rate=pretrain_learning_rate,
            encoder_learning_rate=pretrain_encoder_learning_rate,
            ratio=pretrain_ratio,
            text_cache_dir=os.path.join(work, "pretrain-cache"),
            seed=seed,
        )
        info = pretrained(pretrain_data, preset_dir, pretrain_config)
        retrieval.append((seed, info["eval_before"], info["eval_after"], info["seconds"]))
        click.echo(f"seed {seed}: pretrained in {info['seconds']:.0f} s", err=True)
        for arm in arms:
            config = arm_config(
                arm, encoder_preset, preset_dir, fine_tune_layers, max_epochs, seed, work
            )
            tag = "" if arm == "raw" else log_tag
            model_dir = os.path.join(work, f"model-{arm.replace(', ', '-')}{tag}-{seed}")
            trained(tft_dir, transformed, model_dir, config)
            scored = score_split(
                os.path.join(model_dir, layout.SAVED_MODEL_DIR), test, DEFAULT_TASKS
            )
            metrics, query_values = metrics_of(scored, relevance)
            per_query[arm].append(query_values)
            rows.append({"seed": seed, "encoder": arm, **metrics})
            click.echo(
                f"seed {seed} {arm}: "
                + ", ".join(f"{t}/ndcg@5 {metrics[f'{t}/ndcg@5']:.4f}" for t in DEFAULT_TASKS),
                err=True,
            )

    lines = [
        f"# Domain-pretrained vs raw encoder in MLPR ({dataset}, {queries} queries, "
        f"encoder {encoder_preset})",
        "",
        f"    .venv/bin/python benchmarks/pretrain_gain.py --dataset {dataset} --queries {queries} "
        f"--seeds {seeds} --encoder-preset {encoder_preset} --pretrain-epochs {pretrain_epochs}"
        + (" --hard-negatives" if hard_negatives else "")
        + (f" --pretrain-queries {pretrain_queries}" if pretrain_queries else "")
        + (" --frozen" if frozen else "")
        + f" --fine-tune-layers {fine_tune_layers}"
        + f" --pretrain-fine-tune-layers {pretrain_fine_tune_layers}"
        + (
            f" --pretrain-encoder-learning-rate {pretrain_encoder_learning_rate}"
            if pretrain_encoder_learning_rate
            else ""
        )
        + f" --pretrain-learning-rate {pretrain_learning_rate} --pretrain-ratio {pretrain_ratio}",
        "",
        f"Pretraining data: {pretrain_note}; it trains {pretrain_fine_tune_layers!s} top "
        f"encoder layer(s) and the projections. In MLPR the encoder's fine_tune_layers is "
        f"{fine_tune_layers!s} (0: frozen) unless the row says frozen.",
        "",
        settings_note(
            arm_config("raw", encoder_preset, "", fine_tune_layers, max_epochs, 0, work),
            "MLPR (raw arm)",
        ),
        "",
        "| seed | encoder | " + " | ".join(f"{t} AUC | {t} NDCG@5" for t in DEFAULT_TASKS) + " |",
        "|---|---|" + "---|---|" * len(DEFAULT_TASKS),
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['encoder']} | "
            + " | ".join(f"{r[f'{t}/auc']:.4f} | {r[f'{t}/ndcg@5']:.4f}" for t in DEFAULT_TASKS)
            + " |"
        )
    if relevance:
        lines += ["", "NDCG@5 of the ranking score against the human grades:", ""]
        lines += [f"- seed {r['seed']} {r['encoder']}: {r['human/ndcg@5']:.4f}" for r in rows]
    for arm in arms[1:]:
        lines += comparison(arm, rows, per_query, tasks)
    for label, ref in references.items():
        lines += against_reference(arms, per_query, label, ref, tasks)
    lines += [
        "",
        "Retrieval on the eval split of the pretraining data: engaged products among 100 "
        "random ones (recall@10, NDCG@10), and each query's shown products in the encoder's "
        "order (NDCG@5):",
        "",
    ]
    for seed, before, after, seconds in retrieval:
        lines.append(
            f"- seed {seed}: recall@10 {before['recall@10']:.3f} -> {after['recall@10']:.3f}, "
            f"NDCG@10 {before['ndcg@10']:.3f} -> {after['ndcg@10']:.3f}, "
            f"shown NDCG@5 {before['shown_ndcg@5']:.3f} -> {after['shown_ndcg@5']:.3f} "
            f"({seconds:.0f} s)"
        )
    report = "\n".join(lines) + "\n"
    from reports import print_and_save

    print_and_save(report, out)
    if out:
        with open(os.path.splitext(out)[0] + ".json", "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "retrieval": retrieval}, f, indent=2, default=float)


def arm_config(
    arm: str,
    encoder_preset: str,
    preset_dir: str,
    fine_tune_layers,
    max_epochs: int,
    seed: int,
    work: str,
):
    """The TrainConfig of one arm and seed: the pipeline's settings (train_config) with the
    raw `encoder_preset` or the pretrained `preset_dir`, `fine_tune_layers` (0 in the frozen
    arm), `max_epochs`, `seed` and the text cache under `work`."""
    from components.train.config import train_config

    return train_config(
        encoder_preset=encoder_preset if arm == "raw" else preset_dir,
        fine_tune_layers=0 if arm.endswith("frozen") else fine_tune_layers,
        max_epochs=max_epochs,
        seed=seed,
        text_cache_dir=os.path.join(work, "text-cache"),
    )


def command_train_config(argv=(), arm: str = "raw"):
    """The TrainConfig that `pretrain_gain.py ARGV` trains `arm` with at its first seed,
    without preparing, pretraining or training (default: the default run's raw arm)."""
    params = main.make_context("pretrain_gain", list(argv)).params
    seed = int(params["seeds"].split(",")[0])
    work = params["work"] or "<work>"
    return arm_config(
        arm, params["encoder_preset"], os.path.join(work, f"pretrained-{seed}"),
        params["fine_tune_layers"], params["max_epochs"], seed, work,
    )  # fmt: skip


def default_train_config():
    """The TrainConfig of the default run's raw arm (TRAIN_CHANGES says what it changes)."""
    return command_train_config()


def comparison(arm: str, rows: list[dict], per_query: dict, tasks) -> list[str]:
    """Report lines: `arm` against the raw encoder, per seed and paired over test queries."""
    from paper_tables import average_per_query

    from components.evaluate.stats import paired_comparison

    lines = ["", f"Mean over seeds, and {arm} - raw per seed (NDCG@5):", ""]
    wins = {}
    for t in tasks:
        raw = np.array([r[f"{t}/ndcg@5"] for r in rows if r["encoder"] == "raw"])
        other = np.array([r[f"{t}/ndcg@5"] for r in rows if r["encoder"] == arm])
        diff = other - raw
        if t in DEFAULT_TASKS:
            wins[t] = bool(other.mean() > raw.mean())
        lines.append(
            f"- {t}: raw {raw.mean():.4f}, {arm} {other.mean():.4f} "
            f"(mean difference {diff.mean():+.4f}; per seed "
            + ", ".join(f"{d:+.4f}" for d in diff)
            + ")"
        )
    lines += [
        "",
        f"Paired t-test over test queries (NDCG@5 per query, averaged over seeds), {arm} - raw:",
        "",
        "| task | queries | mean difference | 95% CI | p-value |",
        "|---|---|---|---|---|",
    ]
    for t in tasks:
        res = paired_comparison(
            average_per_query([q[t] for q in per_query[arm]]),
            average_per_query([q[t] for q in per_query["raw"]]),
        )
        lines.append(
            f"| {t} | {res.queries} | {res.mean_difference:+.4f} | "
            f"[{res.ci_low:+.4f}, {res.ci_high:+.4f}] | {res.p_value:.3g} |"
        )
    lost = [t for t, w in wins.items() if not w]
    lines += [
        "",
        f"{arm.capitalize()} beats raw on mean NDCG@5 for every task: "
        + ("yes" if not lost else f"no ({', '.join(lost)} not)"),
    ]
    return lines


def against_reference(arms, per_query: dict, label: str, reference: dict, tasks) -> list[str]:
    """Report lines: each arm (per-query NDCG@5 averaged over seeds) against an untrained
    reference on the same test queries, paired t-tests."""
    from paper_tables import average_per_query

    from components.evaluate.stats import paired_comparison

    lines = [
        "",
        f"Against the untrained reference {label} (paired over test queries, NDCG@5):",
        "",
        "| arm | task | arm | reference | difference | p-value |",
        "|---|---|---|---|---|---|",
    ]
    for arm in arms:
        for t in tasks:
            ours = average_per_query([q[t] for q in per_query[arm]])
            theirs = reference["per_query"][0][t]
            shared = set(ours) & set(theirs)
            res = paired_comparison(ours, theirs)
            lines.append(
                f"| {arm} | {t} | {np.mean([ours[q] for q in shared]):.4f} | "
                f"{np.mean([theirs[q] for q in shared]):.4f} | "
                f"{res.mean_difference:+.4f} | {res.p_value:.3g} |"
            )
    return lines


def _finished(info_path: str, config: dict, folder: str) -> dict | None:
    """The info an earlier run left at `info_path` when it finished with `config`; None
    when there is none; an error when it was made with another configuration."""
    if not os.path.exists(info_path):
        return None
    with open(info_path, encoding="utf-8") as fh:
        info = json.load(fh)
    if info["config"] != config:
        raise ValueError(f"{folder} was made with {info['config']}, not {config}")
    return info


def pretrained(data: tuple[str, str], preset_dir: str, config) -> dict:
    """The info of the preset pretrained with `config` into `preset_dir` (reused when an
    earlier run finished it with the same configuration)."""
    from components.pretrain.pretrain import INFO_FILE, run_pretrain

    info = _finished(os.path.join(preset_dir, INFO_FILE), dataclasses.asdict(config), preset_dir)
    return info or run_pretrain(*data, preset_dir, config)


def trained(tft_dir: str, transformed: str, model_dir: str, config) -> None:
    """Train into `model_dir`, unless an earlier run finished it with the same configuration."""
    from components.train.training import run_training
    from contract import layout

    info_path = os.path.join(model_dir, layout.TRAIN_INFO_FILE)
    if not _finished(info_path, json.loads(config.to_json()), model_dir):
        run_training(tft_dir, transformed, model_dir, config, verbose=0)


if __name__ == "__main__":
    main()
