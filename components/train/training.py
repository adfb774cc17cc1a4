"""The training loop around model/: data from the transformed splits, early stopping and
checkpointing on the eval split, then the Keras model, the encoder preset and the serving
SavedModel written into the output directory. One device or many: the model, its optimizer
and metrics are built in the placement's `tf.distribute` strategy (distribute.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components import disk_faults
from components.step_log import progress
from components.train import loop
from components.train.backup import EpochBackup, clean_stale
from components.train.config import XGBOOST, TrainConfig
from components.train.distribute import (
    Placement,
    learning_rate_scale,
    output_dir_for,
    placement,
    resolve_precision,
    sharded,
)
from components.train.inputs import (
    cached_dataset,
    label_columns,
    make_dataset,
    queries_and_labels,
    read_split,
    split_files,
    training_texts,
    wide_and_labels,
)
from components.train.progress import ProgressLines
from components.train.selection import RankingSelection
from components.train.text_cache import TextCache
from components.train.watchdog import (
    HANG_EXIT,
    HEARTBEATS,
    Heartbeat,
    Watchdog,
    interval_for,
    task_name,
)
from components.transform.preprocessing import VOCAB_OOV_BUCKETS
from components.transform.relevance import MAX_GRADE, encoder_similarity, engagement_relevance
from contract import layout
from contract import schema as S
from model.encoder import ALL_LAYERS, TextEncoder
from model.encoder_prior import start_heads_at_rates
from model.loss_balancing import DynamicWeightAverage
from model.losses import binary_crossentropy
from model.multitask_loss import loss_layer
from model.presets import TINY, load_encoder
from model.ranker import build_ranker, cached_ranker, compile_ranker
from model.scorer import training_tasks
from model.text_preprocessor import TextPreprocessor
from model.xgboost_baseline import fit_xgboost
from serving.export import export_serving_model

CHECKPOINT_FILE = os.path.join("checkpoints", "best.weights.h5")
# What training writes into its output directory (the backup aside, which a retry resumes
# from): removed when the step fails on a full or read-only volume (`clear_outputs`).
OUTPUTS = (
    layout.KERAS_MODEL_FILE,
    layout.SAVED_MODEL_DIR,
    layout.ENCODER_PRESET_DIR,
    layout.TRAIN_INFO_FILE,
    os.path.dirname(CHECKPOINT_FILE),
)


def clear_outputs(output_dir: str) -> list[str]:
    """Remove the model files a failed run may have left half-written in `output_dir` (every
    one of OUTPUTS; the backup stays, for the retry to resume from); returns those that could
    not be removed."""
    return disk_faults.remove([os.path.join(output_dir, name) for name in OUTPUTS])


@dataclasses.dataclass(frozen=True)
class TrainResult:
    epochs_run: int
    best_epoch: int
    best_val_loss: float | None  # None: the untrained model was kept (best_epoch 0)
    train_examples: int
    eval_examples: int
    seconds: float
    history: dict
    text_cache: dict | None = None  # the frozen encoder's cache: texts encoded / reused, seconds
    fit_seconds: float = 0.0  # model.fit (or XGBoost's boosting) alone
    export_seconds: float = 0.0  # the .keras file, the product table and the SavedModel
    replicas: int = 1  # replicas in sync; the global batch is batch_size x replicas
    precision: str = "float32"  # the Keras dtype policy the model trained under
    # How the epoch was chosen (components/train/selection.py): the metric, the best epoch
    # (0: untrained) and its value, the untrained model's values; None: on the eval loss.
    selection: dict | None = None
    # The heads' start under the encoder's prior (_start_heads): mean cosine, rates, biases.
    prior_start: dict | None = None


def _count(dataset: tf.data.Dataset) -> int:
    return int(sum(int(tf.shape(next(iter(labels.values())))[0]) for _, labels in dataset))


def build_model(
    config: TrainConfig,
    tft_output: tft.TFTransformOutput,
    train_files: list[str],
    precision: str = "float32",
):
    """(ranker, preprocessor, backbone, tokenizer) for the configured encoder preset, its
    layers computing under the Keras dtype policy `precision` (their weights stay float32)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return _build_model(config, tft_output, train_files)
    finally:
        keras.config.set_dtype_policy(previous)


def _build_model(config, tft_output, train_files):
    texts = None
    if config.encoder_preset == TINY:
        texts = training_texts(train_files, tft_output, config.max_vocabulary_texts)
    backbone, tokenizer = load_encoder(config.encoder_preset, texts=texts, seed=config.seed)
    preprocessor = TextPreprocessor(tokenizer, config.query_length, config.product_length)
    ranker = config.ranker_config
    encoder = TextEncoder(
        backbone, pooling=ranker.pooling, fine_tune_layers=ranker.fine_tune_layers
    )
    vocabulary_sizes = {
        c: tft_output.vocabulary_size_by_name(S.vocab_name(c)) + VOCAB_OOV_BUCKETS
        for c in S.CATEGORICAL_COLUMNS
    }
    if S.MARKET_ID in tft_output.transformed_feature_spec():
        vocabulary_sizes[S.MARKET] = (
            tft_output.vocabulary_size_by_name(S.vocab_name(S.MARKET)) + VOCAB_OOV_BUCKETS
        )
    wide_dim = int(tft_output.transformed_feature_spec()[S.WIDE].shape[0])
    model = build_ranker(
        config.ranker_config,
        encoder,
        wide_dim=wide_dim,
        vocabulary_sizes=vocabulary_sizes,
        query_length=config.query_length,
        product_length=config.product_length,
    )
    if os.path.isdir(config.encoder_preset):
        _load_pretrained_projections(model, config.encoder_preset)
    return model, preprocessor, backbone, tokenizer


def _load_pretrained_projections(model: keras.Model, preset_dir: str) -> bool:
    """Start MLPR's query and product projections from a domain-pretrained preset's
    (components/pretrain), when it has them and their shapes match; True when copied."""
    from components.pretrain.pretrain import load_projections

    saved = load_projections(preset_dir)
    if saved is None:
        return False
    layers = {"query": model.query_projection, "product": model.product_projection}
    weights = {t: [saved[f"{t}_kernel"], saved[f"{t}_bias"]] for t in layers}
    shapes_match = all(
        [w.shape for w in layers[t].get_weights()] == [w.shape for w in weights[t]] for t in layers
    )
    if not shapes_match:
        logging.warning(
            "the pretrained projections in %s do not fit this ranker's projection_dim; "
            "the projections start at random",
            preset_dir,
        )
        return False
    for t, layer in layers.items():
        layer.set_weights(weights[t])
    return True


def run_training(
    transform_dir: str,
    transformed_dir: str,
    output_dir: str,
    config: TrainConfig,
    verbose: int = 2,
    where: Placement | None = None,
) -> TrainResult:
    """Train on the transformed train split, stop early on the eval split, write the model.
    `where`: the strategy and this process's role (default: `distribute.placement()`, from
    TF_CONFIG and the local GPUs); only the chief writes into `output_dir`.

    With several workers and `config.backup_dir` (a folder they all share), every process
    resumes from the chief's backup there, only the chief writes it, and each keeps a
    heartbeat there that the chief watches (watchdog.py): a process frozen, or training that
    stops moving, for `config.hang_seconds` ends the chief with exit status 75 and the
    reason, naming the process."""
    where = where if where is not None else placement()
    start = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(transform_dir)
    raw_schema = S.RawSchema.load(os.path.join(transform_dir, layout.SCHEMA_FILE))
    config = config.for_tasks(raw_schema.task_names)
    train_files = split_files(transformed_dir, "train")
    eval_files = split_files(transformed_dir, "eval")
    if verbose and (where.replicas > 1 or where.workers > 1):
        print(f"training on {where.describe()}", flush=True)
    verbose = verbose if where.is_chief else 0  # one progress report per job
    with (
        output_dir_for(output_dir, where) as output_dir,
        tempfile.TemporaryDirectory(prefix="text-cache-") as scratch,
    ):
        os.makedirs(output_dir, exist_ok=True)
        if config.backup_dir and where.is_chief:  # the other workers only read it
            clean_stale(config.backup_dir)
        if config.text_cache_dir is None:  # a cache for this run (and its retries) only
            # The chief's in the backup folder; the other workers' their own (the cache is
            # written by one process at a time).
            shared = config.backup_dir and where.is_chief
            cache = os.path.join(config.backup_dir, "text_cache") if shared else scratch
            config = dataclasses.replace(config, text_cache_dir=cache)
        with _watched(config, where) as heartbeat:
            result = _train_and_export(
                config, tft_output, raw_schema, train_files, eval_files, transformed_dir,
                output_dir, verbose, start, where, [heartbeat] if heartbeat else [],
            )  # fmt: skip
        if config.backup_dir and where.is_chief:
            EpochBackup(config.backup_dir).remove()  # the model is written: nothing to resume
        return result


@contextlib.contextmanager
def _watched(config: TrainConfig, where: Placement) -> Iterator[Heartbeat | None]:
    """This process's heartbeat, and on the chief the watchdog, while the block runs: in a
    multi-worker run with a backup folder (watchdog.py). Yields the heartbeat (a callback
    for the training loop), or None."""
    if where.cluster is None or not config.backup_dir:
        yield None
        return
    cluster = where.cluster
    directory = os.path.join(config.backup_dir, HEARTBEATS)
    tasks = {
        task_name(kind, index): address
        for kind, addresses in cluster.spec.items()
        for index, address in enumerate(addresses)
    }
    me = task_name(cluster.task_type, cluster.task_index)
    interval = interval_for(config.hang_seconds)
    heartbeat = Heartbeat(directory, me, tasks[me], interval).start()
    watchdog = None
    if where.is_chief:

        def fail(reason: str) -> None:
            # The main thread waits in a collective that never returns: end the process.
            sys.stdout.flush()
            print(f"training failed on {where.describe()}: {reason}", file=sys.stderr, flush=True)
            os._exit(HANG_EXIT)

        watchdog = Watchdog(directory, tasks, config.hang_seconds, fail, interval).start()
    try:
        yield heartbeat
    finally:
        if watchdog is not None:
            watchdog.stop()
        heartbeat.stop()


def fit_ranker(
    transform_dir: str,
    transformed_dir: str,
    output_dir: str,
    config: TrainConfig,
    verbose: int = 2,
    where: Placement | None = None,
) -> keras.Model:
    """The train step's fit without its export: the trained neural ranker (for experiments
    and checks that need the weights, not the serving model). Same seeding as
    `run_training`, so the same config gives the same weights."""
    where = where if where is not None else placement()
    keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(transform_dir)
    raw_schema = S.RawSchema.load(os.path.join(transform_dir, layout.SCHEMA_FILE))
    config = config.for_tasks(raw_schema.task_names)
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="text-cache-") as scratch:
        if config.text_cache_dir is None:
            config = dataclasses.replace(config, text_cache_dir=scratch)
        model, _, _ = _train_neural(
            config,
            tft_output,
            split_files(transformed_dir, "train"),
            split_files(transformed_dir, "eval"),
            output_dir,
            verbose,
            where,
        )
    return model


def _train_and_export(
    config, tft_output, raw_schema, train_files, eval_files, transformed_dir, output_dir,
    verbose, start, where, callbacks,
) -> TrainResult:  # fmt: skip
    train = (
        functools.partial(_train_xgboost, tasks=raw_schema.task_names)
        if config.architecture == XGBOOST
        else _train_neural
    )
    model, preprocessor, fit = train(
        config, tft_output, train_files, eval_files, output_dir, verbose, where, callbacks
    )
    product_vectors = fit.pop("product_vectors", None)
    progress("exporting the serving model (SavedModel with the transform graph)")
    exporting = time.monotonic()
    keras_file = os.path.join(output_dir, layout.KERAS_MODEL_FILE)
    with disk_faults.writing(keras_file):
        model.save(keras_file)
    export_serving_model(
        model,
        preprocessor,
        tft_output,
        raw_schema,
        os.path.join(output_dir, layout.SAVED_MODEL_DIR),
        score_weights=config.score_weights,
        # The pre-computed catalog: every product of the transformed splits.
        catalog_files=[
            f
            for split in S.SPLITS
            for f in sorted(tf.io.gfile.glob(layout.split_pattern(transformed_dir, split)))
        ],
        product_vectors=product_vectors,
        product_terms=config.catalog_terms,
    )
    result = TrainResult(
        seconds=round(time.monotonic() - start, 1),
        export_seconds=round(time.monotonic() - exporting, 1),
        **fit,
    )
    info_file = os.path.join(output_dir, layout.TRAIN_INFO_FILE)
    with disk_faults.writing(info_file), open(info_file, "w") as fh:
        json.dump(
            {"config": json.loads(config.to_json()), "result": dataclasses.asdict(result)},
            fh,
            indent=2,
        )
    return result


def _train_neural(
    config, tft_output, train_files, eval_files, output_dir, verbose, where,
    callbacks: Sequence[keras.callbacks.Callback] = (),
):  # fmt: skip
    precision = resolve_precision(config.precision)
    # The model, its optimizer and metrics live in the strategy; the datasets outside it.
    with where.strategy.scope():
        model, preprocessor, backbone, tokenizer = build_model(
            config, tft_output, train_files, precision
        )
    batch_size = config.batch_size * where.replicas  # the global batch
    if config.ranker_config.fine_tune_layers == ALL_LAYERS:
        train_ds, eval_ds, counts = _text_datasets(
            config, tft_output, train_files, eval_files, preprocessor, batch_size
        )
        extra = {}
    else:
        train_ds, eval_ds, counts, extra = _cached_datasets(
            config, model, tft_output, train_files, eval_files, preprocessor, batch_size
        )
    scale = learning_rate_scale(where.replicas)
    with where.strategy.scope():
        trained = (
            model if config.ranker_config.fine_tune_layers == ALL_LAYERS else cached_ranker(model)
        )
        compile_ranker(
            trained,
            config.learning_rate * scale,
            None if config.encoder_learning_rate is None else config.encoder_learning_rate * scale,
            model.text_encoder,
        )
        optimizer = trained.optimizer
        if precision == "mixed_float16":  # float16 gradients need a scaled loss
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    selection = None
    if config.select_on != "val_loss":
        if where.workers > 1:
            logging.warning(
                "select_on %r is scored on one process; on %d workers the eval loss selects",
                config.select_on,
                where.workers,
            )
        else:
            funnel = config.ranker_config.tasks
            query, labels = queries_and_labels(eval_files, tft_output, funnel)
            selection = RankingSelection(
                eval_ds.map(lambda x, y: x),
                query,
                labels,
                funnel,
                task=config.select_task,
                patience=config.early_stopping_patience,
                checkpoint=os.path.join(output_dir, CHECKPOINT_FILE),
                # Only the prior makes the untrained model a ranking worth keeping.
                p_value=config.select_p_value if config.ranker_config.encoder_prior else 1.0,
            )
    fitting = time.monotonic()
    history = _fit(
        trained, optimizer, sharded(train_ds), sharded(eval_ds), counts, batch_size, config,
        output_dir, verbose, where, selection, callbacks,
    )  # fmt: skip
    extra["fit_seconds"] = round(time.monotonic() - fitting, 1)
    extra["replicas"] = where.replicas
    extra["precision"] = precision
    if precision != "float32":
        # Serve in float32, as before: the same weights in a model that computes in float32.
        model = _float32_copy(model, config, tft_output, train_files)
    val_loss = history["val_loss"]
    if selection is None:
        best_epoch = int(min(range(len(val_loss)), key=val_loss.__getitem__)) + 1
    else:
        best_epoch = selection.best_epoch  # 0: the untrained model was kept
        extra["selection"] = selection.summary()
    preset_dir = os.path.join(output_dir, layout.ENCODER_PRESET_DIR)
    with disk_faults.writing(preset_dir):
        backbone.save_to_preset(preset_dir)
        tokenizer.save_to_preset(preset_dir)
    fit = {
        "epochs_run": len(val_loss),
        "best_epoch": best_epoch,
        "best_val_loss": float(val_loss[best_epoch - 1]) if best_epoch else None,
        "train_examples": counts[0],
        "eval_examples": counts[1],
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
        **extra,
    }
    return model, preprocessor, fit


def _float32_copy(model, config, tft_output, train_files):
    """`model`'s weights in the same ranker built to compute in float32."""
    copy = build_model(config, tft_output, train_files, "float32")[0]
    copy.set_weights(model.get_weights())
    return copy


def _text_datasets(config, tft_output, train_files, eval_files, preprocessor, batch_size):
    """Token-level batches: the whole encoder runs (and trains) on every step."""
    eval_ds = make_dataset(
        eval_files,
        tft_output,
        preprocessor,
        batch_size,
        shuffle=False,
        targets=config.targets,
        tasks=config.ranker_config.tasks,
    )
    counts = (
        _count(
            make_dataset(
                train_files,
                tft_output,
                preprocessor,
                batch_size,
                shuffle=False,
                tasks=config.ranker_config.tasks,
            )
        ),  # fmt: skip
        _count(eval_ds),
    )
    _check_examples(*counts)
    train_ds = make_dataset(
        train_files,
        tft_output,
        preprocessor,
        batch_size,
        shuffle=True,
        seed=config.seed,
        targets=config.targets,
        epochs=config.max_epochs,
        tasks=config.ranker_config.tasks,
    )
    return (
        _with_cardinality(train_ds, counts[0], batch_size, config.max_epochs),
        _with_cardinality(eval_ds, counts[1], batch_size),
        counts,
    )


def relevance_targets(split: dict, config: TrainConfig) -> np.ndarray:
    """The relevance task's label of each row of a transformed split (`read_split`; a split
    holds whole queries): the engagement relevance of components/transform/relevance.py from
    the first task's count and the impressions, the logged position and the similarity of
    `config.relevance_encoder`, scaled from 0-3 to [0, 1]."""
    first = config.ranker_config.tasks[0]
    needed = [S.IMPRESSIONS, S.POSITION, S.rate_name(first)]
    missing = [c for c in needed if c not in split]
    if missing:
        raise ValueError(
            f"the relevance task needs {missing} in the transformed data: transform it again "
            "with this version"
        )
    impressions = split[S.IMPRESSIONS].astype(np.float64).reshape(-1)
    clicks = np.rint(split[S.rate_name(first)].astype(np.float64).reshape(-1) * impressions)
    queries = [q.decode("utf-8", "replace") for q in split[S.QUERY]]
    similarity = encoder_similarity(
        queries,
        [p.decode("utf-8", "replace") for p in split[S.PRODUCT_TEXT]],
        config.relevance_encoder,
        config.text_cache_dir,
        config.query_length,
        config.product_length,
    )
    grade = engagement_relevance(
        np.asarray(queries, dtype=object), clicks, impressions,
        split[S.POSITION].reshape(-1), similarity,
    )  # fmt: skip
    return (grade / MAX_GRADE).astype(np.float32)


def _cached_datasets(config, model, tft_output, train_files, eval_files, preprocessor, batch_size):
    """Batches of cached encoder outputs (components/train/text_cache.py): each distinct
    query and product text of the splits is encoded once by the frozen part."""
    cache = TextCache(config.text_cache_dir, model.text_encoder, preprocessor)
    splits = {
        "train": read_split(train_files, tft_output, config.ranker_config.tasks),
        "eval": read_split(eval_files, tft_output, config.ranker_config.tasks),
    }
    counts = len(splits["train"][S.WIDE]), len(splits["eval"][S.WIDE])
    _check_examples(*counts)
    tasks = training_tasks(config.ranker_config)
    if config.ranker_config.relevance_task:
        for name, split in splits.items():
            progress(f"labelling the relevance task of the {name} split")
            split[S.RELEVANCE_TASK] = relevance_targets(split, config)
    start = time.monotonic()
    queries, query_index = np.unique(
        np.concatenate([s[S.QUERY] for s in splits.values()]), return_inverse=True
    )
    products, product_index = np.unique(
        np.concatenate([s[S.PRODUCT_TEXT] for s in splits.values()]), return_inverse=True
    )
    progress(
        f"encoding {len(queries)} queries and {len(products)} product texts "
        "with the frozen encoder (each once; cached)"
    )
    encoded_queries = cache.get("query", list(queries))
    encoded_products = cache.get("product", list(products))
    cache_seconds = time.monotonic() - start
    cut = counts[0]
    datasets = [
        cached_dataset(
            split,
            query_index[rows],
            product_index[rows],
            encoded_queries,
            encoded_products,
            batch_size,
            shuffle=name == "train",
            seed=config.seed,
            targets=config.targets,
            epochs=config.max_epochs,
            tasks=tasks,
            lists=bool(config.ranker_config.listwise_tasks),
        )  # fmt: skip
        for name, split, rows in (
            ("train", splits["train"], slice(0, cut)),
            ("eval", splits["eval"], slice(cut, None)),
        )
    ]
    extra = {
        "text_cache": {
            **cache.stats,
            "seconds": round(cache_seconds, 2),
            "queries": len(queries),
            "products": len(products),
            "fingerprint": cache.fingerprint,
        }
    }
    if model.text_encoder.trained_blocks == 0 and config.ranker_config.encoder_prior:
        extra["prior_start"] = _start_heads(
            model, config, splits["train"], encoded_queries.vectors(), encoded_products.vectors(),
            query_index[:cut], product_index[:cut],
        )  # fmt: skip
    if model.text_encoder.trained_blocks == 0:

        def product_vectors(texts: list[bytes]) -> np.ndarray:
            vectors = cache.get("product", texts).vectors()
            return np.asarray(model.embed("product", vectors), dtype=np.float32)

        extra["product_vectors"] = product_vectors
    return (
        _with_cardinality(datasets[0], counts[0], batch_size, config.max_epochs),
        _with_cardinality(datasets[1], counts[1], batch_size),
        counts,
        extra,
    )


def _start_heads(model, config, train, query_vectors, product_vectors, query_rows, product_rows):
    """Start each task's head at its mean training rate for a pair of average encoder cosine
    (model/encoder_prior.start_heads_at_rates). Returns the mean cosine and the biases."""

    def unit(v):
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    cosine = np.sum(unit(query_vectors)[query_rows] * unit(product_vectors)[product_rows], axis=1)
    ranker = config.ranker_config
    columns = label_columns(train, training_tasks(ranker), config.targets)
    rates = {t: float(np.mean(train[columns[t]])) for t in training_tasks(ranker)}
    biases = start_heads_at_rates(
        model.scorer, rates, ranker.tasks, float(np.mean(cosine)), ranker.probability_transfer
    )
    return {"mean_cosine": float(np.mean(cosine)), "rates": rates, "biases": biases}


def _with_cardinality(dataset, examples: int, batch_size: int, epochs: int = 1):
    # Known lengths: progress bars and callbacks see whole epochs.
    return dataset.apply(
        tf.data.experimental.assert_cardinality(math.ceil(examples / batch_size) * epochs)
    )


def _fit(
    model,
    optimizer,
    train_ds,
    eval_ds,
    counts,
    batch_size,
    config,
    output_dir,
    verbose,
    where,
    selection: RankingSelection | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict:
    os.makedirs(os.path.join(output_dir, os.path.dirname(CHECKPOINT_FILE)), exist_ok=True)
    if selection is not None:  # early stopping and the best epoch on ranking
        callbacks = [selection]
    else:
        callbacks = [
            keras.callbacks.ModelCheckpoint(
                os.path.join(output_dir, CHECKPOINT_FILE),
                monitor="val_loss",
                save_best_only=True,
                save_weights_only=True,
            ),
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            ),
        ]
    balancer = loss_layer(model)
    if balancer.balancing == "dwa":
        callbacks.append(DynamicWeightAverage(balancer))
    steps_per_epoch = math.ceil(counts[0] / batch_size)
    if where.is_chief:
        callbacks.append(ProgressLines(config.max_epochs, steps_per_epoch))
    # Last: a heartbeat records an event once the other callbacks are through it, so a
    # process stuck in one of them is behind the others (watchdog.py).
    callbacks += extra_callbacks
    # Every process restores the backup; only the chief writes it (several workers: the
    # chief's, on the volume they share).
    backup = EpochBackup(config.backup_dir) if config.backup_dir else None
    return loop.fit(
        model,
        optimizer,
        train_ds,
        eval_ds,
        strategy=where.strategy,
        epochs=config.max_epochs,
        steps_per_epoch=steps_per_epoch,
        eval_steps=math.ceil(counts[1] / batch_size),
        callbacks=callbacks,
        verbose=verbose,
        backup=backup,
        write_backup=where.is_chief,
    )


def _train_xgboost(
    config, tft_output, train_files, eval_files, output_dir, verbose, where, callbacks, tasks
):  # fmt: skip
    # No epochs: `callbacks` (a heartbeat) have nothing to follow.
    train_wide, train_labels = wide_and_labels(train_files, tft_output, tasks, config.targets)
    eval_wide, eval_labels = wide_and_labels(eval_files, tft_output, tasks, config.targets)
    _check_examples(len(train_wide), len(eval_wide))
    progress(f"boosting one XGBoost model per task on {len(train_wide)} examples")
    fitting = time.monotonic()
    model, rounds = fit_xgboost(
        train_wide, train_labels, eval_wide, eval_labels, config.xgboost, seed=config.seed
    )
    fit_seconds = round(time.monotonic() - fitting, 1)
    predictions = model.predict({S.WIDE: eval_wide}, verbose=0)
    val_loss = sum(
        float(keras.ops.convert_to_numpy(binary_crossentropy(eval_labels[t], predictions[t][:, 0])))
        for t in tasks
    )
    if verbose:
        print(f"xgboost: boosting rounds kept per task {rounds}; eval loss {val_loss:.4f}")
    fit = {
        "epochs_run": max(rounds.values()),
        "best_epoch": max(rounds.values()),
        "best_val_loss": val_loss,
        "train_examples": len(train_wide),
        "eval_examples": len(eval_wide),
        "history": {f"{t}_rounds": [float(n)] for t, n in rounds.items()},
        "fit_seconds": fit_seconds,
    }
    return model, None, fit


def _check_examples(train_examples: int, eval_examples: int) -> None:
    if train_examples == 0 or eval_examples == 0:
        raise ValueError(
            f"training needs examples in the train and eval splits, got {train_examples} and "
            f"{eval_examples}: give the pipeline more queries"
        )
