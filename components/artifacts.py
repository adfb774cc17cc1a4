"""What the components write into kfp's output artifacts beyond what kfp writes itself."""

from __future__ import annotations

import json
import os


def keep_metrics(metrics) -> None:
    """Write a `Metrics` artifact's values (its metadata) into the artifact's file as JSON.

    kfp keeps a Metrics artifact's values in its metadata and writes no file. kfp.local's
    cache takes an output whose file is missing for a lost one, so a step with a Metrics
    output would never be reused by a later local run; on Kubeflow the file is stored with
    the artifact, the values readable beside the UI's."""
    os.makedirs(os.path.dirname(metrics.path), exist_ok=True)
    with open(metrics.path, "w", encoding="utf-8") as fh:
        json.dump(dict(metrics.metadata), fh, indent=2, sort_keys=True)
