"""The MLPR pipeline: ingest -> transform -> train -> evaluate -> (if blessed) push.

    python pipeline.py compile                # writes pipeline.yaml (upload it in the Kubeflow UI)
    python pipeline.py run                    # runs the same DAG locally through kfp.local
    python pipeline.py run --auc-floor 0.99   # a stricter gate: the model is not pushed

The same DAG runs on Kubeflow and locally: `run` executes every component in a subprocess
with kfp.local's SubprocessRunner, in this Python environment.
"""

import json
import os
import sys
import time
import warnings
from typing import NamedTuple

import click
from kfp import compiler, dsl
from kfp.dsl import Artifact, Dataset, Metrics

from components.evaluate.component import evaluate
from components.ingest.component import ingest
from components.push.component import push
from components.train.component import train
from components.transform.component import transform

PIPELINE_NAME = "mlpr-ranking"


class PipelineOutputs(NamedTuple):
    examples: Dataset
    metrics: Metrics
    blessing: Artifact


DEFAULT_YAML = "pipeline.yaml"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description=(
        "Multi-task product ranking (click, add-to-cart, purchase) from search engagement "
        "logs: Beam ingest with validation and a dead-letter output, tensorflow-transform, a "
        "Keras 3 ranker with a DistilBERT-family text encoder, evaluation with a gate against "
        "floors and the model in production, and a versioned push for TF Serving."
    ),
)
def mlpr_pipeline(
    model_base: str,
    input_data: str = "",
    input_format: str = "auto",
    input_encoding: str = "utf-8",
    schema_uri: str = "",
    demo_queries: int = 600,
    funnel_policy: str = "reject",
    beam_pipeline_args: list = [],  # noqa: B006 (kfp parameters declare defaults this way)
    encoder_preset: str = "tiny",
    max_epochs: int = 8,
    batch_size: int = 128,
    learning_rate: float = 0.001,
    seed: int = 0,
    auc_floor: float = 0.6,
    ndcg5_floor: float = 0.0,
    max_drop_vs_champion: float = 0.0,
    model_name: str = "mlpr",
) -> PipelineOutputs:
    """Trains, evaluates and (when blessed) publishes the MLPR ranker.

    Args:
        model_base: root of the TF Serving model repository (a mounted volume); the model is
            pushed to model_base/model_name/<version>/.
        input_data: raw engagement logs (CSV, JSONL or Parquet; a path or glob). Empty: a
            seeded synthetic demo shop is generated.
        input_format: "auto" (by extension), "csv", "jsonl" or "parquet".
        input_encoding: text encoding of CSV/JSONL input, e.g. "utf-8" or "iso-8859-1".
        schema_uri: JSON file declaring the numeric ranking features; empty: the demo schema.
        demo_queries: number of queries of the demo shop (used when input_data is empty).
        funnel_policy: rows whose counts break impressions >= clicks >= add_to_cart >=
            purchases: "reject" (dead-letter) or "clip" (clip to the stage above).
        beam_pipeline_args: Apache Beam options for ingest and transform, e.g.
            ["--runner=DataflowRunner", "--project=...", "--region=..."]; empty runs locally.
        encoder_preset: text encoder: "tiny", "all-minilm-l6-v2", a directory or a hub name.
        max_epochs: upper bound on training epochs (early stopping on the eval split).
        batch_size: training batch size.
        learning_rate: AdamW learning rate.
        seed: seeds the demo data, the model initialisation and shuffling.
        auc_floor: every task's test AUC must reach this for the model to be blessed.
        ndcg5_floor: every task's test NDCG@5 must reach this.
        max_drop_vs_champion: how far below the model in production a metric may fall.
        model_name: the model's name in the serving repository.
    """
    ingested = ingest(
        input_data=input_data,
        input_format=input_format,
        input_encoding=input_encoding,
        schema_uri=schema_uri,
        demo_queries=demo_queries,
        seed=seed,
        funnel_policy=funnel_policy,
        beam_pipeline_args=beam_pipeline_args,
    )
    transformed = transform(
        examples=ingested.outputs["examples"], beam_pipeline_args=beam_pipeline_args
    )
    trained = train(
        transform_graph=transformed.outputs["transform_graph"],
        transformed_examples=transformed.outputs["transformed_examples"],
        encoder_preset=encoder_preset,
        max_epochs=max_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )
    evaluated = evaluate(
        examples=ingested.outputs["examples"],
        model=trained.outputs["model"],
        model_base=model_base,
        model_name=model_name,
        auc_floor=auc_floor,
        ndcg5_floor=ndcg5_floor,
        max_drop_vs_champion=max_drop_vs_champion,
    )
    # Two locks on publishing: the branch runs only when blessed, and the pusher itself
    # refuses a model whose blessing is not positive.
    with dsl.If(evaluated.outputs["Output"] == True, name="blessed"):  # noqa: E712 (a kfp condition)
        push(
            model=trained.outputs["model"],
            blessing=evaluated.outputs["blessing"],
            model_base=model_base,
            model_name=model_name,
        )
    return PipelineOutputs(
        examples=ingested.outputs["examples"],
        metrics=evaluated.outputs["metrics"],
        blessing=evaluated.outputs["blessing"],
    )


def compile_pipeline(path: str = DEFAULT_YAML) -> str:
    compiler.Compiler().compile(mlpr_pipeline, package_path=path)
    return path


def _versions(model_base: str, model_name: str) -> set[str]:
    root = os.path.join(model_base, model_name)
    if not os.path.isdir(root):
        return set()
    return {d for d in os.listdir(root) if d.isdigit()}


def _read_json(directory: str, name: str) -> dict:
    with open(os.path.join(directory, name), encoding="utf-8") as fh:
        return json.load(fh)


def format_summary(
    outputs, model_base: str, model_name: str, new_versions: list[str], seconds: float
) -> str:
    """The end-of-run summary: counts, metrics per task, blessing and reasons, pushed path."""
    from components import layout
    from components import schema as S

    counts = _read_json(outputs["examples"].path, layout.COUNTS_FILE)
    blessing = _read_json(outputs["blessing"].path, layout.BLESSING_FILE)
    results = _read_json(outputs["blessing"].path, layout.EVAL_RESULTS_FILE)
    candidate, champion = results["candidate"], results.get("champion")
    lines = [f"MLPR pipeline finished in {seconds:.0f} s", "", "Ingest:"]
    lines.append(
        f"  rows read {counts['rows_read']}, kept {counts['rows_kept']}, filtered (<= "
        f"{S.MIN_IMPRESSIONS_EXCLUSIVE} impressions) {counts['rows_filtered_low_impressions']}, "
        f"dead-lettered {counts['rows_dead_letter']}"
    )
    for reason, n in sorted(counts.get("dead_letter_by_reason", {}).items()):
        if n:
            lines.append(f"    dead letter {reason}: {n}")
    splits = counts.get("splits", {})
    lines.append(
        "  splits: "
        + ", ".join(f"{s} {v['rows']} rows / {v['queries']} queries" for s, v in splits.items())
    )
    metric_names = ["auc", "ndcg@1", "ndcg@5", "ndcg@10"]
    lines += ["", "Test metrics (candidate" + (" vs champion" if champion else "") + "):"]
    lines.append("  task      " + "".join(f"{m:>16}" for m in metric_names))
    for task in S.TASKS:
        cells = []
        for m in metric_names:
            value = candidate.get(f"{task}/{m}")
            cell = "n/a" if value is None else f"{value:.4f}"
            if champion and champion.get(f"{task}/{m}") is not None:
                cell += f" ({champion[f'{task}/{m}']:.4f})"
            cells.append(f"{cell:>16}")
        lines.append(f"  {task:<10}" + "".join(cells))
    lines += ["", f"Blessed: {'yes' if blessing['blessed'] else 'NO'}"]
    lines += [f"  - {r}" for r in blessing["reasons"]]
    if new_versions:
        for version in new_versions:
            lines.append(f"Pushed: {os.path.join(model_base, model_name, version)}")
    else:
        lines.append("Pushed: nothing (the model was not blessed)")
    return "\n".join(lines)


def preflight(input_data: str, input_format: str, input_encoding: str, schema_uri: str) -> None:
    """Check the input files and schema before starting the DAG; exit 2 with the reason."""
    if not input_data:
        return
    from components import schema as S
    from components.ingest.sources import resolve_inputs

    try:
        resolve_inputs(input_data, input_format, input_encoding, S.resolve_schema(schema_uri))
    except ValueError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)


@click.group()
def cli() -> None:
    """Compile the MLPR pipeline for Kubeflow, or run it locally."""


@cli.command("compile")
@click.option(
    "--output", default=DEFAULT_YAML, show_default=True, help="Where to write the IR YAML."
)
def compile_command(output: str) -> None:
    """Compile the pipeline to Kubeflow Pipelines IR YAML."""
    click.echo(compile_pipeline(output))


@cli.command("run")
@click.option("--input-data", default="", help="Raw logs (path or glob); empty: demo data.")
@click.option("--input-format", default="auto", show_default=True)
@click.option("--input-encoding", default="utf-8", show_default=True)
@click.option("--schema-uri", default="", help="Ranking-feature schema JSON; empty: demo schema.")
@click.option("--demo-queries", default=600, show_default=True, type=int)
@click.option(
    "--funnel-policy", default="reject", show_default=True, type=click.Choice(["reject", "clip"])
)
@click.option("--beam-arg", "beam_args", multiple=True, help="A Beam pipeline option (repeatable).")
@click.option("--encoder-preset", default="tiny", show_default=True)
@click.option("--max-epochs", default=8, show_default=True, type=int)
@click.option("--batch-size", default=128, show_default=True, type=int)
@click.option("--learning-rate", default=0.001, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--auc-floor", default=0.6, show_default=True, type=float)
@click.option("--ndcg5-floor", default=0.0, show_default=True, type=float)
@click.option("--max-drop-vs-champion", default=0.0, show_default=True, type=float)
@click.option(
    "--model-base",
    default="runs/serving",
    show_default=True,
    help="TF Serving model repository root.",
)
@click.option("--model-name", default="mlpr", show_default=True)
@click.option(
    "--pipeline-root",
    default="runs/pipeline_root",
    show_default=True,
    help="Where kfp.local keeps artifacts.",
)
def run_command(beam_args, pipeline_root: str, model_base: str, model_name: str, **params) -> None:
    """Run the whole DAG locally through kfp.local (SubprocessRunner) and print a summary."""
    from kfp import local

    preflight(
        params["input_data"], params["input_format"], params["input_encoding"], params["schema_uri"]
    )
    model_base = os.path.abspath(model_base)
    pipeline_root = os.path.abspath(pipeline_root)
    os.makedirs(model_base, exist_ok=True)
    before = _versions(model_base, model_name)
    # Locally every step runs in this environment rather than in the component image.
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root)
    start = time.monotonic()
    try:
        task = mlpr_pipeline(
            model_base=model_base,
            model_name=model_name,
            beam_pipeline_args=list(beam_args),
            **params,
        )
    except RuntimeError as err:
        click.echo(f"error: the pipeline failed: {err}", err=True)
        click.echo("The failing step's log above says why.", err=True)
        sys.exit(1)
    new_versions = sorted(_versions(model_base, model_name) - before, key=int)
    click.echo(
        format_summary(task.outputs, model_base, model_name, new_versions, time.monotonic() - start)
    )


if __name__ == "__main__":
    cli()
