"""The training loop around model/: data from the transformed splits, early stopping and
checkpointing on the eval split, then the Keras model, the encoder preset and the serving
SavedModel written into the output directory."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time

import keras
import tensorflow as tf
import tensorflow_transform as tft

from components import layout
from components import schema as S
from components.train.config import XGBOOST, TrainConfig
from components.train.inputs import make_dataset, split_files, training_texts, wide_and_labels
from components.transform.preprocessing import VOCAB_OOV_BUCKETS
from model.encoder import TextEncoder
from model.losses import binary_crossentropy
from model.presets import TINY, load_encoder
from model.ranker import PRODUCT_PROJECTION, QUERY_PROJECTION, build_ranker, compile_ranker
from model.text_preprocessor import TextPreprocessor
from model.xgboost_baseline import fit_xgboost
from serving.export import export_serving_model

ENCODER_PRESET_DIR = "encoder_preset"
CHECKPOINT_FILE = os.path.join("checkpoints", "best.weights.h5")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    train_examples: int
    eval_examples: int
    seconds: float
    history: dict


def _count(dataset: tf.data.Dataset) -> int:
    return int(sum(int(tf.shape(labels["click"])[0]) for _, labels in dataset))


def build_model(config: TrainConfig, tft_output: tft.TFTransformOutput, train_files: list[str]):
    """(ranker, preprocessor, backbone, tokenizer) for the configured encoder preset."""
    texts = None
    if config.encoder_preset == TINY:
        texts = training_texts(train_files, tft_output, config.max_vocabulary_texts)
    backbone, tokenizer = load_encoder(config.encoder_preset, texts=texts, seed=config.seed)
    preprocessor = TextPreprocessor(tokenizer, config.query_length, config.product_length)
    ranker = config.ranker_config
    encoder = TextEncoder(backbone, pooling=ranker.pooling, fine_tune=ranker.fine_tune_encoder)
    vocabulary_sizes = {
        c: tft_output.vocabulary_size_by_name(S.vocab_name(c)) + VOCAB_OOV_BUCKETS
        for c in S.CATEGORICAL_COLUMNS
    }
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
    layers = {
        "query": model.get_layer(QUERY_PROJECTION),
        "product": model.get_layer(PRODUCT_PROJECTION),
    }
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
) -> TrainResult:
    """Train on the transformed train split, stop early on the eval split, write the model."""
    start = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(transform_dir)
    raw_schema = S.RawSchema.load(os.path.join(transform_dir, layout.SCHEMA_FILE))
    train_files = split_files(transformed_dir, "train")
    eval_files = split_files(transformed_dir, "eval")
    os.makedirs(output_dir, exist_ok=True)
    train = _train_xgboost if config.architecture == XGBOOST else _train_neural
    model, preprocessor, fit = train(
        config, tft_output, train_files, eval_files, output_dir, verbose
    )

    model.save(os.path.join(output_dir, layout.KERAS_MODEL_FILE))
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
    )
    result = TrainResult(seconds=round(time.monotonic() - start, 1), **fit)
    with open(os.path.join(output_dir, layout.TRAIN_INFO_FILE), "w") as fh:
        json.dump(
            {"config": json.loads(config.to_json()), "result": dataclasses.asdict(result)},
            fh,
            indent=2,
        )
    return result


def _train_neural(config, tft_output, train_files, eval_files, output_dir, verbose):
    model, preprocessor, backbone, tokenizer = build_model(config, tft_output, train_files)
    compile_ranker(model, config.learning_rate)
    train_ds = make_dataset(
        train_files, tft_output, preprocessor, config.batch_size, shuffle=True, seed=config.seed
    )
    eval_ds = make_dataset(eval_files, tft_output, preprocessor, config.batch_size, shuffle=False)
    train_examples, eval_examples = _count(train_ds), _count(eval_ds)
    _check_examples(train_examples, eval_examples)
    # Known epoch lengths: progress bars and callbacks see whole epochs.
    train_ds = train_ds.apply(
        tf.data.experimental.assert_cardinality(math.ceil(train_examples / config.batch_size))
    )
    eval_ds = eval_ds.apply(
        tf.data.experimental.assert_cardinality(math.ceil(eval_examples / config.batch_size))
    )
    os.makedirs(os.path.join(output_dir, os.path.dirname(CHECKPOINT_FILE)), exist_ok=True)
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
    history = model.fit(
        train_ds,
        validation_data=eval_ds,
        epochs=config.max_epochs,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=verbose,
    ).history
    val_loss = history["val_loss"]
    best = int(min(range(len(val_loss)), key=val_loss.__getitem__))
    preset_dir = os.path.join(output_dir, ENCODER_PRESET_DIR)
    backbone.save_to_preset(preset_dir)
    tokenizer.save_to_preset(preset_dir)
    fit = {
        "epochs_run": len(val_loss),
        "best_epoch": best + 1,
        "best_val_loss": float(val_loss[best]),
        "train_examples": train_examples,
        "eval_examples": eval_examples,
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
    }
    return model, preprocessor, fit


def _train_xgboost(config, tft_output, train_files, eval_files, output_dir, verbose):
    train_wide, train_labels = wide_and_labels(train_files, tft_output)
    eval_wide, eval_labels = wide_and_labels(eval_files, tft_output)
    _check_examples(len(train_wide), len(eval_wide))
    model, rounds = fit_xgboost(
        train_wide, train_labels, eval_wide, eval_labels, config.xgboost, seed=config.seed
    )
    predictions = model.predict({S.WIDE: eval_wide}, verbose=0)
    val_loss = sum(
        float(keras.ops.convert_to_numpy(binary_crossentropy(eval_labels[t], predictions[t][:, 0])))
        for t in S.TASKS
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
    }
    return model, None, fit


def _check_examples(train_examples: int, eval_examples: int) -> None:
    if train_examples == 0 or eval_examples == 0:
        raise ValueError(
            f"training needs examples in the train and eval splits, got {train_examples} and "
            f"{eval_examples}: give the pipeline more queries"
        )
