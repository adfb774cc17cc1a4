"""The default three-task pipeline is pinned: with fixed seeds, the demo shop through ingest,
transform, training and evaluation gives the same results as before the funnel became a list
in the schema (`default_funnel_pinned.json`, written with `python
tests/test_default_funnel_pinned.py --write` at commit da5f556, when the tasks were constants).

Compared: the ingest counts, the training history (loss and per-task validation AUC per epoch)
and every test-split metric of the evaluation (AUC, NDCG@k per task, and their means), to
1e-4 relative: a label, tower or output wired to the wrong task moves them by far more.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).with_name("default_funnel_pinned.json")
QUERIES, SEED = 80, 5


def run_default_pipeline(root: Path) -> dict:
    from components.evaluate.scoring import compute_metrics, score_split
    from components.ingest import demo_data
    from components.ingest.job import run_ingest
    from components.train.config import TrainConfig
    from components.train.training import run_training
    from components.transform.transform import run_transform
    from contract import layout
    from contract import schema as S
    from model.config import RankerConfig

    log = demo_data.write(demo_data.generate(QUERIES, seed=SEED), root / "demo.csv")
    examples = root / "examples"
    counts = run_ingest(str(log), str(examples), S.DEMO_SCHEMA)
    run_transform(str(examples), str(root / "tft"), str(root / "tx"), temp_dir=str(root / "tmp"))
    config = TrainConfig(
        max_epochs=3,
        batch_size=64,
        learning_rate=5e-3,
        early_stopping_patience=3,
        seed=SEED,
        ranker=RankerConfig(
            projection_dim=16, num_shared_experts=2, expert_units=(32, 16), tower_units=(8,)
        ),
    )
    result = run_training(str(root / "tft"), str(root / "tx"), str(root / "model"), config, 0)
    scored = score_split(
        str(root / "model" / layout.SAVED_MODEL_DIR),
        layout.split_pattern(str(examples), "test"),
        S.DEMO_SCHEMA.task_names,
    )
    metrics = compute_metrics(scored)
    return {
        "ingest": {
            "kept": counts.rows_kept,
            "rows_per_split": {name: split.rows for name, split in counts.splits.items()},
        },
        "history": {k: [float(v) for v in values] for k, values in result.history.items()},
        "metrics": {k: None if math.isnan(v) else float(v) for k, v in sorted(metrics.items())},
    }


def test_default_three_task_pipeline_gives_the_pinned_results(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    got = run_default_pipeline(tmp_path)
    assert got["ingest"] == golden["ingest"]
    assert sorted(got["history"]) == sorted(golden["history"])
    for key, values in golden["history"].items():
        assert got["history"][key] == pytest.approx(values, rel=1e-4), key
    assert sorted(got["metrics"]) == sorted(golden["metrics"])
    for key, value in golden["metrics"].items():
        assert got["metrics"][key] == pytest.approx(value, rel=1e-4, nan_ok=True), key


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: test_default_funnel_pinned.py --write")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = run_default_pipeline(Path(tmp))
    GOLDEN.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    print(json.dumps(found, indent=2))
