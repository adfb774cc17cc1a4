"""The evaluate step as one plain call: score the candidate (and the champion, when the
repository has one) on the test split, decide the gate, write the blessing's files."""

from __future__ import annotations

import json
import math
import os

from components.evaluate.analysis import analyse, paired_ndcg
from components.evaluate.gate import Blessing, decide
from components.evaluate.gate_config import GateConfig
from components.evaluate.report import EvaluationReport
from components.evaluate.scoring import compute_metrics, find_champion, score_split
from contract import layout


def run_evaluation(
    examples_dir: str,
    model_dir: str,
    blessing_dir: str,
    model_base: str,
    model_name: str,
    config: GateConfig,
) -> tuple[Blessing, EvaluationReport]:
    """Evaluate the candidate in `model_dir` (its SavedModel in `saved_model/`) on the test
    split of `examples_dir` against the newest version under `model_base/model_name`, and
    write into `blessing_dir`: blessing.json (the verdict and every check), eval_results.json
    (both models' metrics, the file the champion gate of a later run reads) and report.json
    (the report's content). Returns the verdict and the report."""
    test_pattern = layout.split_pattern(examples_dir, "test")
    candidate_dir = os.path.join(model_dir, layout.SAVED_MODEL_DIR)
    candidate_scored = score_split(candidate_dir, test_pattern)
    candidate = compute_metrics(candidate_scored)

    champion_dir = find_champion(model_base, model_name)
    champion = champion_scored = paired = None
    if champion_dir is not None:
        champion_scored = score_split(champion_dir, test_pattern)
        champion = compute_metrics(champion_scored)
        paired = paired_ndcg(candidate_scored, champion_scored, config.confidence)

    verdict = decide(
        candidate,
        champion,
        config,
        paired,
        champion_uri=champion_dir,
        repository=os.path.join(model_base, model_name),
    )
    evaluation = EvaluationReport(
        split=test_pattern,
        candidate_uri=candidate_dir,
        champion_uri=champion_dir,
        candidate_metrics=candidate,
        champion_metrics=champion,
        candidate=analyse(candidate_scored),
        champion=None if champion_scored is None else analyse(champion_scored),
        blessing=verdict.to_dict(),
    )
    os.makedirs(blessing_dir, exist_ok=True)
    with open(os.path.join(blessing_dir, layout.BLESSING_FILE), "w", encoding="utf-8") as f:
        f.write(verdict.to_json())
    results = {
        "split": test_pattern,
        "candidate_uri": candidate_dir,
        "champion_uri": champion_dir,
        "candidate": _json_metrics(candidate),
        "champion": None if champion is None else _json_metrics(champion),
    }
    with open(os.path.join(blessing_dir, layout.EVAL_RESULTS_FILE), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, allow_nan=False)
    evaluation.write(blessing_dir)
    return verdict, evaluation


def _json_metrics(metrics: dict) -> dict:
    """NaN (a metric undefined on this split, e.g. AUC with one class) as JSON null."""
    return {k: None if math.isnan(v) else v for k, v in metrics.items()}
