"""From how much log does training pay? MLPR, its baselines and the no-training references
on Home Depot at growing numbers of queries.

For each size, `paper_tables.py` runs the models over the seeds on that many queries (its
own folder under `--out`, `q<size>/`, with its tables and paired tests over the test
queries, e.g. MLPR against the zero-shot cosine); this script then gathers every size's
`metrics.csv` into one table (`learning_curve.md`, `learning_curve.csv`) and plots NDCG@5
against the number of queries, one panel per metric (human grades, then each task), mean and
seed standard deviation (`learning_curve.png`).

    MLPR_HOMEDEPOT=../shared/data/homedepot/train.csv.zip python benchmarks/learning_curve.py \\
        --sizes 250,500,1000,3000,11795 --seeds 0,1,2

Each size resumes from its `q<size>/runs.jsonl` (a finished model and seed is not run again);
`--plot-only` redraws from what is there.

The models train with the pipeline's settings (MiniLM frozen; paper_tables.py's --encoder-preset
and --fine-tune-layers are given the pipeline's values), changed only by --max-epochs and
TRAIN_CHANGES.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import click
import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCES = ("lexical_score", "bm25", "zero-shot all-minilm-l6-v2")
METRICS = ("human/ndcg@5", "click/ndcg@5", "atc/ndcg@5", "purchase/ndcg@5")
# What the default run's MLPR changes from the pipeline's training settings, and why.
TRAIN_CHANGES = {
    "text_cache_dir": "one text cache per size under --work, shared by every model and seed",
}


def paper_tables_arguments(
    size: int, seeds: str, models: str, out: str, work: str, max_epochs: int
) -> list[str]:
    """paper_tables.py's arguments for `size` queries: the pipeline's encoder settings."""
    return [
        "--dataset", "homedepot", "--queries", str(size), "--seeds", seeds, "--models", models,
        "--encoder-preset", "all-minilm-l6-v2", "--fine-tune-layers", "0",
        "--max-epochs", str(max_epochs), "--out", out, "--work", work, "--resume",
    ]  # fmt: skip


def default_train_config():
    """The TrainConfig of the default run's MLPR at its first size and seed, as paper_tables.py
    builds it from this run's arguments (TRAIN_CHANGES says what it changes)."""
    sys.path.insert(0, HERE)
    from paper_tables import command_train_config

    params = main.make_context("learning_curve", []).params
    size = int(params["sizes"].split(",")[0])
    arguments = paper_tables_arguments(
        size, params["seeds"], params["models"], os.path.join(params["out"], f"q{size}"),
        os.path.join(params["work"], f"q{size}"), params["max_epochs"],
    )  # fmt: skip
    return command_train_config(arguments, "mlpr")


def run_size(size: int, seeds: str, models: str, out: str, work: str, max_epochs: int) -> float:
    """paper_tables.py on `size` queries; returns its minutes."""
    start = time.monotonic()
    command = [
        sys.executable, os.path.join(HERE, "paper_tables.py"),
        *paper_tables_arguments(size, seeds, models, out, work, max_epochs),
    ]  # fmt: skip
    click.echo(" ".join(command), err=True)
    subprocess.run(command, check=True)
    return (time.monotonic() - start) / 60


def gather(out: str, sizes: list[int]) -> pd.DataFrame:
    """Every size's metrics.csv as one frame with a `queries` column."""
    frames = []
    for size in sizes:
        path = os.path.join(out, f"q{size}", "metrics.csv")
        if os.path.exists(path):
            frames.append(pd.read_csv(path).assign(queries=size))
    if not frames:
        raise click.ClickException(f"no size under {out} has a metrics.csv yet")
    return pd.concat(frames, ignore_index=True)


def plot(frame: pd.DataFrame, path: str) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if m in set(frame["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        rows = frame[frame["metric"] == metric]
        for model, curve in rows.groupby("model", sort=False):
            curve = curve.sort_values("queries")
            dashed = model in REFERENCES
            ax.errorbar(
                curve["queries"], curve["mean"], yerr=curve["std"], label=model,
                linestyle="--" if dashed else "-", marker="o" if not dashed else None,
                capsize=3, linewidth=1.2,
            )  # fmt: skip
        ax.set_xscale("log")
        ax.set_title(metric)
        ax.set_xlabel("Home Depot queries (log scale)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("NDCG@5 (mean ± seed std)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(frame: pd.DataFrame) -> list[str]:
    lines = []
    for metric in METRICS:
        rows = frame[frame["metric"] == metric]
        if rows.empty:
            continue
        sizes = sorted(rows["queries"].unique())
        lines += [f"### {metric}", "", "| model | " + " | ".join(f"{s} q" for s in sizes) + " |"]
        lines.append("|---" * (len(sizes) + 1) + "|")
        for model, by_model in rows.groupby("model", sort=False):
            cells = []
            for size in sizes:
                hit = by_model[by_model["queries"] == size]
                cells.append(
                    "" if hit.empty else f"{hit['mean'].iloc[0]:.4f} ± {hit['std'].iloc[0]:.4f}"
                )
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


@click.command()
@click.option("--sizes", default="250,500,1000,3000,11795", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option(
    "--models",
    default="mlpr,xgboost,xgboost (+ cosine),mlp_mtl",
    show_default=True,
    help="paper_tables.py labels; 'xgboost (+ cosine)' is XGBoost with the encoder's cosine.",
)
@click.option("--max-epochs", default=8, show_default=True)
@click.option(
    "--out",
    default=os.path.join(HERE, "results", "learning_curve_homedepot"),
    show_default=True,
)
@click.option("--work", default="/tmp/mlpr-learning-curve", show_default=True)
@click.option("--plot-only", is_flag=True, help="Only gather and plot what is there.")
def main(sizes, seeds, models, max_epochs, out, work, plot_only) -> None:
    size_list = [int(s) for s in sizes.split(",") if s.strip()]
    minutes = {}
    if not plot_only:
        if not os.environ.get("MLPR_HOMEDEPOT"):
            raise click.ClickException("set MLPR_HOMEDEPOT to Home Depot's train.csv(.zip)")
        for size in size_list:
            minutes[size] = run_size(
                size, seeds, models, os.path.join(out, f"q{size}"),
                os.path.join(work, f"q{size}"), max_epochs,
            )  # fmt: skip
    frame = gather(out, size_list)
    frame = frame[frame["metric"].isin(METRICS)]
    frame = frame[frame["model"].isin([*REFERENCES, *models.split(",")])]
    os.makedirs(out, exist_ok=True)
    frame.to_csv(os.path.join(out, "learning_curve.csv"), index=False)
    plot(frame, os.path.join(out, "learning_curve.png"))
    command = "python benchmarks/learning_curve.py " + " ".join(sys.argv[1:])
    done = sorted(frame["queries"].unique())
    md = [
        "# Learning curve on Home Depot",
        "",
        f"Command: `MLPR_HOMEDEPOT=... {command}`",
        "",
        f"Sizes run: {', '.join(str(s) for s in done)} queries; seeds {seeds}; MiniLM frozen "
        f"(the default); {os.cpu_count()} CPUs"
        + (
            "; minutes per size this run: " + ", ".join(f"{s}: {m:.1f}" for s, m in minutes.items())
            if minutes
            else ""
        )
        + ".",
        "",
        "NDCG@5 on each size's test split, mean ± std over seeds (references have no seed). "
        "Paired tests over the test queries (e.g. MLPR against the zero-shot cosine): "
        "`q<size>/tables.md`.",
        "",
        "![learning curve](learning_curve.png)",
        "",
        *table(frame),
    ]
    with open(os.path.join(out, "learning_curve.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(md) + "\n")
    click.echo("\n".join(md))
    if np.isnan(frame["mean"]).any():
        click.echo("warning: some metrics are undefined (NaN)", err=True)


if __name__ == "__main__":
    main()
