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
