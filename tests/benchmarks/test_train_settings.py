"""Every benchmark trains with the pipeline's settings and changes only what it says: its
default run's TrainConfig, built as the run builds it (without data or training), differs from
the pipeline's (components/train/config.train_config()) in exactly the fields that its
TRAIN_CHANGES names."""

import importlib
import re
import sys
from pathlib import Path

import pytest

from components.train.config import changed_settings, train_config

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # as when a script runs: its siblings import by name

# The benchmarks that train a ranker (tested below to be all of them).
TRAINING = (
    "learning_curve",
    "paper_tables",
    "pipeline_steps",
    "pretrain_gain",
    "serving_latency",
    "serving_precision",
    "serving_profile",
    "swap_time",
    "train_scaling",
    "train_resume",
    "train_step",
    "train_throughput",
    "transfer",
)
MINILM = "all-minilm-l6-v2"


def _changes(name: str) -> dict:
    return changed_settings(importlib.import_module(name).default_train_config())


@pytest.mark.parametrize("name", TRAINING)
def test_a_default_run_changes_only_what_its_benchmark_says(name):
    module = importlib.import_module(name)
    config = module.default_train_config()
    assert sorted(changed_settings(config)) == sorted(module.TRAIN_CHANGES)
    assert all(isinstance(why, str) and why.strip() for why in module.TRAIN_CHANGES.values())


def test_the_changes_are_the_ones_said():
    assert _changes("paper_tables") == {
        "encoder_preset": (MINILM, "tiny"),
        "fine_tune_layers": (0, "all"),
        "text_cache_dir": (None, "<work>/text_cache"),
    }
    assert _changes("pretrain_gain")["encoder_preset"] == (MINILM, "tiny")
    assert _changes("serving_latency") == {
        "max_epochs": (8, 1),
        "encoder_preset": (MINILM, "tiny"),
        "fine_tune_layers": (0, "all"),
    }
    assert _changes("swap_time") == {"max_epochs": (8, 1)}
    assert _changes("train_throughput") == {"fine_tune_layers": (0, "all")}
    assert _changes("train_step") == {"text_cache_dir": (None, "<work>/cache")}
    assert _changes("train_resume") == {
        "text_cache_dir": (None, "<work>/cache"),
        "backup_dir": (None, "<work>/backup"),
    }
    for same in ("serving_precision", "train_scaling"):
        assert _changes(same) == {}, same
    # The learning curve runs paper_tables.py with the pipeline's encoder, frozen.
    assert set(_changes("learning_curve")) == {"text_cache_dir"}


def test_pretrain_gain_and_paper_tables_train_the_same_mlpr_at_their_recorded_commands():
    """The raw arm of results/pretrain_gain_homedepot_minilm.md and MLPR of
    results/paper_tables_homedepot_minilm/: the same settings, the pipeline's, but the name of
    the text cache's folder."""
    pretrain_gain = importlib.import_module("pretrain_gain")
    paper_tables = importlib.import_module("paper_tables")
    common = ["--dataset", "homedepot", "--queries", "3000", "--seeds", "0,1,2",
              "--encoder-preset", MINILM, "--fine-tune-layers", "0", "--work", "w"]  # fmt: skip
    raw = pretrain_gain.command_train_config(
        [*common, "--pretrain-epochs", "1", "--hard-negatives", "--pretrain-fine-tune-layers",
         "1", "--pretrain-encoder-learning-rate", "5e-05", "--pretrain-ratio", "4"],
    )  # fmt: skip
    mlpr = paper_tables.command_train_config(
        [*common, "--models", "xgboost,mlp_mtl,mlpr,mlpr (tiny),mlpr (any count)"]
    )
    assert changed_settings(raw, mlpr) == {"text_cache_dir": ("w/text_cache", "w/text-cache")}
    assert changed_settings(mlpr) == {"text_cache_dir": (None, "w/text_cache")}
    # Its variants change what their labels say, on the same settings.
    tiny = paper_tables.command_train_config(common, "mlpr (tiny)")
    assert changed_settings(tiny, mlpr) == {
        "encoder_preset": (MINILM, "tiny"),
        "fine_tune_layers": (0, "all"),
    }
    assert changed_settings(paper_tables.command_train_config(common, "xgboost (any count)")) == {
        "architecture": ("mlpr", "xgboost"),
        "targets": ("rate", "any"),
        "text_cache_dir": (None, "w/text_cache"),
    }


def test_every_benchmark_that_trains_builds_its_settings_with_train_config():
    trains = re.compile(r"\b(run_training|train_and_push|build_ranker)\(|\"paper_tables\.py\"")
    found = set()
    for path in BENCHMARKS.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        # Built by train_config, never field by field.
        assert not re.search(r"\b(TrainConfig|RankerConfig)\(", text), path.name
        if trains.search(text) and "def main(" in text:
            found.add(path.stem)
    assert found == set(TRAINING)
    assert train_config() == importlib.import_module("train_scaling").default_train_config()


def test_a_report_names_the_changed_settings():
    from reports import settings_note

    assert settings_note(train_config()) == "Training: the pipeline's default settings."
    # The cache's folder changes no model: left out.
    changed = train_config(max_epochs=1, encoder_prior=False, text_cache_dir="/c")
    assert settings_note(changed, "MLPR") == (
        "MLPR: the pipeline's default settings but max_epochs 1 (default 8), encoder_prior "
        "False (default True)."
    )
