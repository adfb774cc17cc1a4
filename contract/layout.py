"""Where each step writes inside its output artifact directory.

A step's output artifact is a directory; the next step finds files through these helpers,
never through hard-coded names of its own.
"""

from __future__ import annotations

import os

# ingest -> Dataset
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
    """Prefix passed to Beam's WriteToTFRecord (shards get `-00000-of-0000N` appended)."""
    return os.path.join(root, split, "data")


def split_pattern(root: str, split: str) -> str:
    """Glob matching every shard of a split written with `split_prefix`."""
    return os.path.join(root, split, f"data-*{RECORD_SUFFIX}")


# Written by the pretrain step instead of an encoder preset when pretraining is switched off.
PRETRAIN_DISABLED_FILE = "DISABLED"
