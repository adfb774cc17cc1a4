"""Where each step writes inside its output artifact directory.

A step's output artifact is a directory; the next step finds files through these helpers,
never through hard-coded names of its own.
"""

from __future__ import annotations

import os

# ingest -> Dataset
SPLIT_SUFFIX = ".parquet"  # the raw splits: Parquet files (components/raw_splits.py)
# TFRecords: the transformed splits, and the raw splits exported as tf.Examples
RECORD_SUFFIX = ".tfrecord.gz"
SCHEMA_FILE = "schema.json"  # the RawSchema the rows were validated against
COUNTS_FILE = "counts.json"  # read / kept / filtered / dead-lettered, per reason and per split
DEAD_LETTER_DIR = (
    "dead_letter"  # JSON lines: {"source", "row", "reason", "field", "message", "raw"}
)

# transform -> transform graph (a TFT output directory) and transformed examples
TRANSFORMED_DIR = "transformed"

# train -> Model
SAVED_MODEL_DIR = "saved_model"  # the serving export (raw features in, probabilities out)
KERAS_MODEL_FILE = "model.keras"
ENCODER_PRESET_DIR = "encoder_preset"  # the text encoder the model trained with (keras-hub)
TRAIN_INFO_FILE = "train_info.json"  # config, history, example counts

# evaluate -> blessing
BLESSING_FILE = "blessing.json"
EVAL_RESULTS_FILE = "eval_results.json"


def split_dir(root: str, split: str) -> str:
    return os.path.join(root, split)


def split_prefix(root: str, split: str) -> str:
    """Prefix of a split's shards (each gets `-00000-of-0000N` and its suffix appended)."""
    return os.path.join(root, split, "data")


def split_pattern(root: str, split: str) -> str:
    """Glob matching every TFRecord shard of a split written with `split_prefix` (the
    transformed splits, and raw splits exported as tf.Examples)."""
    return os.path.join(root, split, f"data-*{RECORD_SUFFIX}")


def raw_split_pattern(root: str, split: str) -> str:
    """Glob matching every Parquet shard of a raw split, as ingest writes them."""
    return os.path.join(root, split, f"data-*{SPLIT_SUFFIX}")


def raw_shard_path(root: str, split: str, index: int, count: int) -> str:
    """The Parquet shard of a raw split that holds the rows of input file `index` of
    `count`."""
    return f"{split_prefix(root, split)}-{index:05d}-of-{count:05d}{SPLIT_SUFFIX}"


# Written by the pretrain step instead of an encoder preset when pretraining is switched off.
PRETRAIN_DISABLED_FILE = "DISABLED"
