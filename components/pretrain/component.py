"""Kubeflow component: pretrain the text encoder on the engagement log (optional step)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def pretrain(
    transform_graph: Input[Model],
    transformed_examples: Input[Dataset],
    encoder: Output[Model],
    metrics: Output[Metrics],
    enabled: bool = False,
    encoder_preset: str = "all-minilm-l6-v2",
    fine_tune_layers: str = "1",
    epochs: int = 3,
    hard_negatives: bool = False,
    seed: int = 0,
):
    """Pretrains the text encoder (two towers) on the log; see components/pretrain/step.py.

    Args:
        transform_graph: the transform step's graph.
        transformed_examples: transformed train/eval/test splits.
        encoder: the pretrained preset directory (or the DISABLED marker).
        metrics: retrieval metrics on the eval split, before and after.
        enabled: run the pretraining (the pipeline's pretrain_encoder).
        encoder_preset: where the encoder starts, as in the train step.
        fine_tune_layers: the top k transformer layers that train, over cached lower ones
            ("0": only the projections); "all" for "tiny", which learns from scratch.
        epochs: passes over the train queries.
        hard_negatives: the query's shown-but-not-engaged products are its first negatives.
        seed: seeds sampling and initialisation.
    """
    from components.step_log import quiet

    quiet()  # before TensorFlow loads (components/step_log.py)
    from components.lifeline import follow_runner

    follow_runner()  # a local run's step ends with the run (components/lifeline.py)

    from components.artifacts import keep_metrics
    from components.pretrain.step import pretrain_step

    pretrain_step(
        transform_graph.path,
        transformed_examples.path,
        encoder.path,
        encoder.metadata,
        metrics,
        enabled,
        encoder_preset=encoder_preset,
        fine_tune_layers=fine_tune_layers,
        epochs=epochs,
        hard_negatives=hard_negatives,
        seed=seed,
    )
    keep_metrics(metrics)  # a file for the metrics: kfp.local's cache reuses the step
