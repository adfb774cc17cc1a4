"""Kubeflow component: train the multi-task ranker and export it for TF Serving."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    transform_graph: Input[Model],
    transformed_examples: Input[Dataset],
    pretrained_encoder: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    # No defaults: the pipeline gives its GPU settings, or none in a pipeline without GPUs.
    worker_gpu_type: str,
    worker_gpu_count: int,
    architecture: str = "mlpr",
    encoder_preset: str = "all-minilm-l6-v2",
    fine_tune_layers: str = "0",
    text_cache_dir: str = "",
    checkpoint_root: str = "",
    max_epochs: int = 8,
    batch_size: int = 128,
    learning_rate: float = 0.001,
    seed: int = 0,
    precision: str = "auto",
    loss_balancing: str = "",
    listwise_tasks: str = "",
    region_mask: bool = False,
    relevance_task: bool = False,
    select_p_value: float = 0.05,
    train_workers: int = 1,
    train_max_restarts: int = 3,
    train_deadline_seconds: int = 86400,
    train_hang_seconds: int = 120,
):
    """Trains the multi-task ranker and exports it for TF Serving; see components/train/step.py.

    Args:
        transform_graph: the transform step's graph (exported inside the serving model).
        transformed_examples: transformed train/eval/test splits.
        pretrained_encoder: the pretrain step's preset, used unless that step was switched off.
        model: model.keras, the encoder preset, the serving SavedModel and train_info.json.
        metrics: final training and eval losses and AUCs per task.
        worker_gpu_type: the GPU resource each TrainJob worker requests ("": none).
        worker_gpu_count: how many of it each TrainJob worker requests.
        architecture: "mlpr" or a baseline: mlp_single, mlp_mtl, esm2, mmoe, ple, aitm, dcn_v2,
            xgboost.
        encoder_preset: "tiny", "all-minilm-l6-v2", a keras-hub/Hugging Face dir or preset name.
        fine_tune_layers: the encoder's layers that train: "all", or the top k ("0": frozen).
        text_cache_dir: where the frozen encoder's outputs are kept for later runs ("": this run).
        checkpoint_root: where unfinished training is backed up, keyed by the step's inputs and
            settings ("": inside `model`, which a retry of the task shares).
        max_epochs: upper bound on epochs.
        batch_size: examples per training step and replica (GPU).
        learning_rate: AdamW learning rate at one replica (times sqrt(replicas) with more).
        seed: seeds initialisation, shuffling and dropout.
        precision: "auto", "float32", "mixed_bfloat16" or "mixed_float16".
        loss_balancing: "uncertainty", "gradnorm", "dwa" or "fixed" ("": the architecture's).
        listwise_tasks: tasks trained with the listwise softmax loss, comma-separated.
        region_mask: masks generated from the market on each task's input and tower.
        relevance_task: also learn the engagement relevance label (a task outside the funnel).
        select_p_value: a trained epoch replaces the untrained model (the encoder's zero-shot
            ranking) only if it ranks the eval queries better at this one-sided paired p-value
            (1.0: whatever its margin).
        train_workers: nodes that train together; above 1 the others run as a TrainJob.
        train_max_restarts: (train_workers > 1) restarts of the whole cluster after a failure,
            every process resuming from the chief's last backup.
        train_deadline_seconds: (train_workers > 1) the TrainJobs' activeDeadlineSeconds, in
            all (0: none).
        train_hang_seconds: (train_workers > 1) the chief fails training when a process is
            frozen, or no process moves, for this long.
    """
    from components.step_log import quiet

    quiet()  # before TensorFlow loads (components/step_log.py)
    from components.lifeline import follow_runner

    follow_runner()  # a local run's step ends with the run (components/lifeline.py)

    from components.artifacts import keep_metrics
    from components.train.step import train_step

    train_step(
        transform_graph.path,
        transformed_examples.path,
        pretrained_encoder.path,
        model.path,
        model.metadata,
        metrics,
        architecture=architecture,
        encoder_preset=encoder_preset,
        fine_tune_layers=fine_tune_layers,
        text_cache_dir=text_cache_dir,
        checkpoint_root=checkpoint_root,
        max_epochs=max_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        precision=precision,
        loss_balancing=loss_balancing,
        listwise_tasks=listwise_tasks,
        region_mask=region_mask,
        relevance_task=relevance_task,
        select_p_value=select_p_value,
        train_workers=train_workers,
        train_max_restarts=train_max_restarts,
        train_deadline_seconds=train_deadline_seconds,
        train_hang_seconds=train_hang_seconds,
        worker_gpu_type=worker_gpu_type,
        worker_gpu_count=worker_gpu_count,
    )
    keep_metrics(metrics)  # a file for the metrics: kfp.local's cache reuses the step
