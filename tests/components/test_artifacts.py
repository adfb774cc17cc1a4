"""A Metrics artifact's values are written into its file (components/artifacts.py)."""

import json

from kfp.dsl import Metrics

from components.artifacts import keep_metrics


def test_metrics_get_a_file_with_their_values(tmp_path):
    metrics = Metrics(uri=str(tmp_path / "train" / "metrics"))
    metrics.log_metric("val_loss", 0.25)
    metrics.log_metric("best_epoch", 3)
    assert not (tmp_path / "train" / "metrics").exists()  # kfp writes none
    keep_metrics(metrics)
    written = json.loads((tmp_path / "train" / "metrics").read_text())
    assert written == {"best_epoch": 3, "val_loss": 0.25}
