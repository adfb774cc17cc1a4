"""The training loop around model/: data from the transformed splits, early stopping and
checkpointing on the eval split, then the Keras model, the encoder preset and the serving
SavedModel written into the output directory."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import keras
import tensorflow as tf
import tensorflow_transform as tft

from components import layout
from components import schema as S
from components.train.config import TrainConfig
from components.train.inputs import make_dataset, split_files, training_texts
from components.transform.preprocessing import VOCAB_OOV_BUCKETS
from model.encoder import TextEncoder
from model.presets import TINY, load_encoder
from model.ranker import build_ranker
from model.text_preprocessor import TextPreprocessor
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
    encoder = TextEncoder(
        backbone, pooling=config.ranker.pooling, fine_tune=config.ranker.fine_tune_encoder
    )
    vocabulary_sizes = {
        c: tft_output.vocabulary_size_by_name(S.vocab_name(c)) + VOCAB_OOV_BUCKETS
        for c in S.CATEGORICAL_COLUMNS
    }
    wide_dim = int(tft_output.transformed_feature_spec()[S.WIDE].shape[0])
    model = build_ranker(
        config.ranker,
        encoder,
        wide_dim=wide_dim,
        vocabulary_sizes=vocabulary_sizes,
        query_length=config.query_length,
        product_length=config.product_length,
    )
    return model, preprocessor, backbone, tokenizer


def compile_model(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate),
        loss={t: keras.losses.BinaryCrossentropy() for t in S.TASKS},
        metrics={t: [keras.metrics.AUC(name="auc")] for t in S.TASKS},
    )


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

    model, preprocessor, backbone, tokenizer = build_model(config, tft_output, train_files)
    compile_model(model, config.learning_rate)
    train_ds = make_dataset(
        train_files, tft_output, preprocessor, config.batch_size, shuffle=True, seed=config.seed
    )
    eval_ds = make_dataset(eval_files, tft_output, preprocessor, config.batch_size, shuffle=False)
    train_examples, eval_examples = _count(train_ds), _count(eval_ds)
    if train_examples == 0 or eval_examples == 0:
        raise ValueError(
            f"training needs examples in the train and eval splits, got {train_examples} and "
            f"{eval_examples}: give the pipeline more queries"
        )
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
    best_epoch = int(min(range(len(val_loss)), key=val_loss.__getitem__))

    model.save(os.path.join(output_dir, layout.KERAS_MODEL_FILE))
    preset_dir = os.path.join(output_dir, ENCODER_PRESET_DIR)
    backbone.save_to_preset(preset_dir)
    tokenizer.save_to_preset(preset_dir)
    export_serving_model(
        model,
        preprocessor,
        tft_output,
        raw_schema,
        os.path.join(output_dir, layout.SAVED_MODEL_DIR),
        score_weights=config.score_weights,
    )
    result = TrainResult(
        epochs_run=len(val_loss),
        best_epoch=best_epoch + 1,
        best_val_loss=float(val_loss[best_epoch]),
        train_examples=train_examples,
        eval_examples=eval_examples,
        seconds=round(time.monotonic() - start, 1),
        history={k: [float(v) for v in vs] for k, vs in history.items()},
    )
    with open(os.path.join(output_dir, layout.TRAIN_INFO_FILE), "w") as fh:
        json.dump(
            {"config": json.loads(config.to_json()), "result": dataclasses.asdict(result)},
            fh,
            indent=2,
        )
    return result
