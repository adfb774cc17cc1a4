"""The MLPR pipeline: ingest -> transform -> pretrain -> train -> evaluate -> (if blessed) push.

    python pipeline.py compile                # writes pipeline.yaml (upload it in the Kubeflow UI)
    python pipeline.py compile --gpus 0 --output pipeline-cpu.yaml   # for a cluster without GPUs

This module holds the DAG and its compilation. Its run parameters are the table in
pipeline_parameters.py. The same DAG runs locally through kfp.local (`./dev demo`,
local/run_pipeline.py) and on a cluster (k8s/run_pipeline.py).
"""

import dataclasses
from typing import NamedTuple

import click
from kfp import compiler, dsl
from kfp.dsl import HTML, Artifact, Dataset, Metrics
from kfp.dsl.graph_component import GraphComponent

import pipeline_parameters as P
from components import resources
from components.evaluate.component import evaluate
from components.ingest.component import ingest
from components.pretrain.component import pretrain
from components.push.component import push
from components.train.component import train
from components.transform.component import transform
from pipeline_parameters import PipelineParameters

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
PIPELINE_SUMMARY = "Trains, evaluates and (when blessed) publishes the MLPR ranker."


def mlpr_dag(
    p: PipelineParameters, retry: resources.Retry = resources.DEFAULT_RETRY
) -> PipelineOutputs:
    """The DAG over the run parameters `p` (kfp pipeline channels; the GPU ones None in a
    pipeline compiled without GPUs), each step retried as `retry` says."""
    # None in a pipeline compiled without GPUs: no step asks for one (build_pipeline).
    gpu = (
        None
        if p.accelerator_type is None
        else resources.GpuRequest(
            p.accelerator_type, p.accelerator_count, p.accelerator_node_selector
        )
    )
    ingested = ingest(
        input_data=p.input_data,
        input_format=p.input_format,
        input_encoding=p.input_encoding,
        schema_uri=p.schema_uri,
        demo_queries=p.demo_queries,
        seed=p.seed,
        funnel_policy=p.funnel_policy,
        max_bad_share=p.max_bad_share,
        beam_pipeline_args=p.beam_pipeline_args,
    )
    resources.set_resources(ingested, resources.INGEST, retry)
    resources.mount_repository(ingested, p.repository_pvc)
    transformed = transform(
        examples=ingested.outputs["examples"], beam_pipeline_args=p.beam_pipeline_args
    )
    resources.set_resources(transformed, resources.TRANSFORM, retry)
    # One pretrain task, switched by pretrain_encoder: when off it only writes a marker and
    # train uses encoder_preset as it is. (Two branches joined by dsl.OneOf would spare the
    # GPU scheduling of that marker step, but kfp.local cannot run dsl.OneOf; the step is
    # cached, so a rerun with the same inputs starts no pod at all.)
    pretrained = pretrain(
        transform_graph=transformed.outputs["transform_graph"],
        transformed_examples=transformed.outputs["transformed_examples"],
        enabled=p.pretrain_encoder,
        encoder_preset=p.encoder_preset,
        fine_tune_layers=p.pretrain_fine_tune_layers,
        epochs=p.pretrain_epochs,
        hard_negatives=p.pretrain_hard_negatives,
        seed=p.seed,
    )
    resources.set_resources(pretrained, resources.PRETRAIN, retry)
    resources.use_gpus(pretrained, gpu)
    trained = train(
        transform_graph=transformed.outputs["transform_graph"],
        transformed_examples=transformed.outputs["transformed_examples"],
        pretrained_encoder=pretrained.outputs["encoder"],
        architecture=p.architecture,
        encoder_preset=p.encoder_preset,
        fine_tune_layers=p.fine_tune_layers,
        text_cache_dir=p.text_cache_dir,
        checkpoint_root=p.checkpoint_root,
        max_epochs=p.max_epochs,
        batch_size=p.batch_size,
        learning_rate=p.learning_rate,
        seed=p.seed,
        precision=p.precision,
        loss_balancing=p.loss_balancing,
        listwise_tasks=p.listwise_tasks,
        region_mask=p.region_mask,
        relevance_task=p.relevance_task,
        select_p_value=p.select_p_value,
        train_workers=p.train_workers,
        train_max_restarts=p.train_max_restarts,
        train_deadline_seconds=p.train_deadline_seconds,
        train_hang_seconds=p.train_hang_seconds,
        # Each TrainJob worker asks for what the step asks for (CPU pipelines: nothing).
        worker_gpu_type="" if gpu is None else p.accelerator_type,
        worker_gpu_count=0 if gpu is None else p.accelerator_count,
    )
    resources.set_resources(trained, resources.TRAIN, retry)
    resources.expose_pod_ip(trained)
    resources.mount_repository(trained, p.repository_pvc)
    resources.use_gpus(trained, gpu)
    evaluated = evaluate(
        examples=ingested.outputs["examples"],
        model=trained.outputs["model"],
        model_base=p.model_base,
        model_name=p.model_name,
        auc_floor=p.auc_floor,
        ndcg5_floor=p.ndcg5_floor,
        metric_floors=p.metric_floors,
        max_drop_vs_champion=p.max_drop_vs_champion,
        max_drop_by_metric=p.max_drop_by_metric,
        champion_significance=p.champion_significance,
        significance_task=p.significance_task,
        significance_confidence=p.significance_confidence,
        force_push=p.force_push,
        relevance_encoder=p.relevance_encoder,
        reference_check=p.reference_check,
    )
    resources.set_resources(evaluated, resources.EVALUATE, retry)
    resources.mount_repository(evaluated, p.repository_pvc)
    # Two locks on publishing: the branch runs only when blessed, and the pusher itself
    # refuses a model whose blessing is not positive.
    with dsl.If(evaluated.outputs["Output"] == True, name="blessed"):  # noqa: E712 (a kfp condition)
        pushed = push(
            model=trained.outputs["model"],
            blessing=evaluated.outputs["blessing"],
            model_base=p.model_base,
            model_name=p.model_name,
            serving_base=p.serving_base,
            serving_batching=p.serving_batching,
        )
        resources.set_resources(pushed, resources.PUSH, retry)
        resources.mount_repository(pushed, p.repository_pvc)
    return PipelineOutputs(
        examples=ingested.outputs["examples"],
        metrics=evaluated.outputs["metrics"],
        blessing=evaluated.outputs["blessing"],
        report=evaluated.outputs["report"],
    )


def build_pipeline(
    gpus: int = resources.DEFAULT_GPUS, retries: int = resources.DEFAULT_RETRY.count
) -> GraphComponent:
    """The pipeline for a cluster with GPUs (gpus > 0) or without (gpus == 0), every step
    retried up to `retries` times (resources.Retry; 0: never).

    kfp takes a pipeline's parameters from its function's signature, here generated from the
    PipelineParameters table, and a run-time parameter can change a resource request but not
    remove it, so the GPU/CPU choice is made here, at compile time. With gpus > 0 the GPU
    steps request `accelerator_count` (default: gpus) of `accelerator_type` on nodes matching
    `accelerator_node_selector` and tolerate the nvidia.com/gpu taint, all three being run
    parameters. With gpus == 0 those parameters do not exist and no step asks for an
    accelerator, toleration or node selector.
    """
    if gpus < 0 or retries < 0:
        raise ValueError(f"gpus and retries must be 0 or more, got {gpus} and {retries}")
    signature = P.signature(gpus=bool(gpus), returns=PipelineOutputs)
    if gpus:
        signature = signature.replace(
            parameters=[
                p.replace(default=gpus) if p.name == "accelerator_count" else p
                for p in signature.parameters.values()
            ]
        )

    def pipeline_function(*channels):
        # kfp calls this with one channel per parameter, in signature order.
        given = dict(zip(signature.parameters, channels, strict=True))
        parameters = PipelineParameters(**(dict.fromkeys(P.GPU_PARAMETERS) | given))
        return mlpr_dag(parameters, dataclasses.replace(resources.DEFAULT_RETRY, count=retries))

    pipeline_function.__signature__ = signature
    pipeline_function.__doc__ = P.docstring(PIPELINE_SUMMARY, gpus=bool(gpus))
    return dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)(pipeline_function)


# The pipeline users upload (pipeline.yaml): the train step requests one GPU by default.
mlpr_pipeline = build_pipeline()


def compile_pipeline(
    path: str = DEFAULT_YAML,
    gpus: int = resources.DEFAULT_GPUS,
    retries: int = resources.DEFAULT_RETRY.count,
) -> str:
    default = gpus == resources.DEFAULT_GPUS and retries == resources.DEFAULT_RETRY.count
    pipeline = mlpr_pipeline if default else build_pipeline(gpus, retries)
    compiler.Compiler().compile(pipeline, package_path=path)
    return path


@click.group()
def cli() -> None:
    """Compile the MLPR pipeline for Kubeflow (`./dev demo` runs it locally)."""


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
@click.option(
    "--retries",
    default=resources.DEFAULT_RETRY.count,
    show_default=True,
    type=click.IntRange(min=0),
    help=f"How often a failed step runs again (after {resources.DEFAULT_RETRY.backoff}, then "
    f"{resources.DEFAULT_RETRY.factor:g} times longer each time); 0: never.",
)
def compile_command(output: str, gpus: int, retries: int) -> None:
    """Compile the pipeline to Kubeflow Pipelines IR YAML."""
    click.echo(compile_pipeline(output, gpus, retries))


if __name__ == "__main__":
    cli()
