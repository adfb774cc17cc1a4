"""The DAG itself, run through kfp.local in a process of its own (local/run_pipeline.py starts
it and follows its output):

    python -m local.execute RUN.json

RUN.json holds `pipeline_root`, `outputs` (where to write the pipeline's output artifact
paths as JSON), `cache` (reuse the outputs of an earlier run's steps that cache, as on
Kubeflow) and `parameters` (the pipeline's run parameters). kfp.local's SubprocessRunner
runs every step in a subprocess of this one, in this Python environment. Exit status 1 when a
step failed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings

from components.lifeline import follow_runner, with_this_process
from components.step_log import quiet


def main(run_file: str) -> int:
    quiet()
    from kfp import local

    from pipeline import build_pipeline

    with open(run_file, encoding="utf-8") as fh:
        run = json.load(fh)
    # kfp.local's orchestrator logs cache hits and skipped tasks at INFO on the root logger,
    # outside its per-task logging: show them (the runner's view reads the cache hits).
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s"
    )
    # Locally every step runs in this environment rather than in the component image.
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    # Resource requests and GPUs are for the cluster (components/resources.py).
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    # This process and every step end with the runner that started it, and the steps with this
    # one too (components/lifeline.py).
    follow_runner()
    os.environ.update(with_this_process(os.environ))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=run["pipeline_root"],
        # Each step's caching choice (components/resources.py) applies, as on Kubeflow.
        enable_caching=run["cache"],
    )
    try:
        task = build_pipeline(retries=run.get("retries", 0))(**run["parameters"])
    except RuntimeError as err:
        print(f"error: the pipeline failed: {err}", file=sys.stderr)
        return 1
    with open(run["outputs"], "w", encoding="utf-8") as fh:
        json.dump({name: artifact.path for name, artifact in task.outputs.items()}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
