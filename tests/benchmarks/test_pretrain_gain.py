"""The pretraining benchmark's larger-log option refuses what it cannot do, before any work."""

import importlib.util
import os
import sys

import click
import pandas as pd
import pytest

_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
sys.path.insert(0, _DIR)
_spec = importlib.util.spec_from_file_location(
    "pretrain_gain", os.path.join(_DIR, "pretrain_gain.py")
)
pretrain_gain = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pretrain_gain)


def test_larger_log_needs_home_depot(tmp_path):
    with pytest.raises(click.BadParameter, match="only Home Depot"):
        pretrain_gain.larger_log("demo", 600, 2400, pd.DataFrame(), str(tmp_path))


def test_larger_log_must_be_larger(tmp_path):
    with pytest.raises(click.BadParameter, match=r"above --queries \(3000\), got 3000"):
        pretrain_gain.larger_log("homedepot", 3000, 3000, pd.DataFrame(), str(tmp_path))
    assert not os.listdir(tmp_path)  # nothing was prepared


def test_a_working_folder_is_reused_only_for_the_same_settings(tmp_path):
    import json

    import paper_tables

    from components.train.config import TrainConfig

    (tmp_path / paper_tables.PREPARED_FILE).write_text(
        json.dumps({"dataset": "demo", "queries": 40, "seed": 0, "rows": 1})
    )
    with pytest.raises(ValueError, match="was prepared for .*'queries': 40"):
        paper_tables.prepare("demo", 30, 0, str(tmp_path))

    model_dir = tmp_path / "model-raw-0"
    model_dir.mkdir()
    (model_dir / "train_info.json").write_text(
        json.dumps({"config": json.loads(TrainConfig(seed=1).to_json())})
    )
    # Same configuration: nothing to train (a training would fail here: no data).
    pretrain_gain.trained("no-tft", "no-data", str(model_dir), TrainConfig(seed=1))
    with pytest.raises(ValueError, match="was made with"):
        pretrain_gain.trained("no-tft", "no-data", str(model_dir), TrainConfig(seed=2))
