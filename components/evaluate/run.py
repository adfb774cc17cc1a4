"""The evaluate step as one plain call: score the candidate (and the champion, when the
repository has one) on the test split, decide the gate, write the blessing's files.

For every task of the data's schema (examples_dir/schema.json: by default click,
add-to-cart, purchase) it computes AUC and NDCG@1/5/10 of the candidate's probabilities,
grouped by query, and the same for the model in production (the champion: the highest
numeric version under model_base/model_name), if any.

The gate. Floors: every task's AUC must reach auc_floor and its NDCG@5 ndcg5_floor;
metric_floors adds or overrides floors, keyed "metric" (every task) or "task/metric".
With a champion, every gated metric must also stay within its allowed drop of the
champion's value (max_drop_vs_champion, overridden per "metric" or "task/metric" by
max_drop_by_metric), and the per-query paired NDCG@5 difference on significance_task (""
for the funnel's last task) must be significantly positive (champion_significance
"better": a tiny noisy gain does not displace the champion), not significantly negative
("not_worse"), or is not tested ("off"). A task named by the gate's keys or by
significance_task must be one of the schema's. On the first run only the floors apply, and
the reference check: the no-training references (references.py: BM25 over the titles, the
zero-shot cosine of the candidate's own encoder, the schema's relevance-score features) are
scored on the same test split, and on every task the candidate's NDCG@5 must not be
significantly below the best of them (reference_check "gate"; "warn": recorded, not
blocking; "off": none scored). force_push blesses the candidate even when checks fail; the blessing records that it was
forced and which checks failed.

`evaluate_step` is the kfp component's body: it also fills the step's visual outputs (the
metrics, a ROC curve and confusion matrix per task in the classification slots, the HTML
report) and returns the verdict as a plain bool, so that `dsl.If` on it works both on
Kubeflow and in kfp.local.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, MutableMapping, Sequence

from components.evaluate import references
from components.evaluate.analysis import analyse, calibration_metrics, paired_ndcg
from components.evaluate.gate import Blessing, decide
from components.evaluate.gate_config import OFF, GateConfig
from components.evaluate.kfp_outputs import log_classifications, log_metrics, log_references
from components.evaluate.relevance_label import engagement_labels
from components.evaluate.report import EvaluationReport
from components.evaluate.report_html import render_html
from components.evaluate.report_text import render_text
from components.evaluate.scoring import (
    MissingOutputs,
    compute_metrics,
    find_champion,
    score_split,
)
from components.step_log import progress
from contract import layout
from contract import schema as S


def evaluate_step(
    examples_dir: str,
    model_dir: str,
    model_base: str,
    model_name: str,
    metrics,
    classification: Sequence,
    report_path: str,
    blessing_dir: str,
    blessing_metadata: MutableMapping,
    *,
    auc_floor: float,
    ndcg5_floor: float,
    metric_floors: Mapping,
    max_drop_vs_champion: float,
    max_drop_by_metric: Mapping,
    champion_significance: str,
    significance_task: str,
    significance_confidence: float,
    force_push: bool,
    relevance_encoder: str = "",
    reference_check: str = "gate",
) -> bool:
    """`run_evaluation` with the gate of the step's parameters, then the step's outputs: every
    candidate metric into `metrics` (kfp Metrics), the k-th task's ROC curve and confusion
    matrix into the slot `classification[k]` (kfp ClassificationMetrics; see
    kfp_outputs.log_classifications for a funnel shorter or longer), the verdict into
    `blessing_metadata` (blessed, forced, reasons, champion_uri), the HTML report at
    `report_path`, and the text report printed. Returns whether the candidate is blessed."""
    config = GateConfig.from_parameters(
        auc_floor=auc_floor,
        ndcg5_floor=ndcg5_floor,
        metric_floors=metric_floors,
        max_drop_vs_champion=max_drop_vs_champion,
        max_drop_by_metric=max_drop_by_metric,
        significance=champion_significance,
        significance_task=significance_task,
        confidence=significance_confidence,
        force_push=force_push,
        reference_check=reference_check,
    )
    verdict, evaluation = run_evaluation(
        examples_dir, model_dir, blessing_dir, model_base, model_name, config, relevance_encoder
    )
    log_metrics(metrics, evaluation.candidate_metrics)
    log_references(metrics, evaluation.reference_metrics, evaluation.tasks)
    log_classifications(classification, evaluation.candidate.tasks)
    blessing_metadata.update(
        blessed=verdict.blessed,
        forced=verdict.forced,
        reasons=list(verdict.reasons),
        champion_uri=evaluation.champion_uri or "",
    )
    os.makedirs(os.path.dirname(report_path) or ".", exist_ok=True)
    with open(report_path, "w", encoding="utf-8") as f:
        f.write(render_html(evaluation))
    print(render_text(evaluation))
    progress(verdict.reasons[0] if verdict.blessed else "; ".join(verdict.reasons))
    return verdict.blessed


def run_evaluation(
    examples_dir: str,
    model_dir: str,
    blessing_dir: str,
    model_base: str,
    model_name: str,
    config: GateConfig,
    relevance_encoder: str = "",
) -> tuple[Blessing, EvaluationReport]:
    """Evaluate the candidate in `model_dir` (its SavedModel in `saved_model/`) on the test
    split of `examples_dir`, for the tasks of its schema.json (`config` is checked against
    them), against the newest version under `model_base/model_name`, and write into
    `blessing_dir`: blessing.json (the verdict and every check), eval_results.json
    (both models' and the references' metrics, the file the champion gate of a later run
    reads) and report.json (the report's content). Unless config.reference_check is "off",
    the no-training references are scored on the same split and gated against
    (references.py; the zero-shot one from the encoder in `model_dir`). `relevance_encoder`:
    a text encoder preset whose similarity, with the click rate, labels relevance for
    "relevance/ndcg@k" (relevance_label.py); "": none. Returns the verdict and the report."""
    schema = S.RawSchema.load(os.path.join(examples_dir, layout.SCHEMA_FILE))
    tasks = schema.task_names
    config = config.for_tasks(tasks)
    test_pattern = layout.raw_split_pattern(examples_dir, "test")
    candidate_dir = os.path.join(model_dir, layout.SAVED_MODEL_DIR)
    relevance = None
    if relevance_encoder:
        progress(f"labelling relevance from engagement and {relevance_encoder}'s similarity")
        relevance = engagement_labels(test_pattern, relevance_encoder, schema)
    progress(f"scoring the test split with the candidate ({', '.join(tasks)})")
    counts = {task.name: task.count for task in schema.tasks}
    candidate_scored = score_split(candidate_dir, test_pattern, tasks, counts=counts)
    candidate = compute_metrics(candidate_scored, relevance=relevance)
    # What the probabilities predict: the count per impression unless trained on "count > 0".
    # The push keeps no train settings, so the champion is read as the candidate is.
    per_impression = trained_targets(model_dir) == "rate"
    candidate.update(calibration_metrics(candidate_scored, per_impression))

    champion_dir = find_champion(model_base, model_name)
    champion = champion_scored = paired = None
    not_comparable = None
    if champion_dir is not None:
        progress(f"scoring the test split with the champion ({champion_dir})")
        try:
            champion_scored = score_split(champion_dir, test_pattern, tasks, counts=counts)
        except MissingOutputs as err:
            # A champion of another funnel predicts other tasks: nothing to compare on them.
            not_comparable = (
                f"the champion {champion_dir} has no output for {err.missing}: a model of "
                f"another funnel (the schema's tasks are {list(tasks)})"
            )
            progress(f"{not_comparable}; not compared with it")
            champion_dir = None
    if champion_scored is not None:
        champion = compute_metrics(champion_scored, relevance=relevance)
        champion.update(calibration_metrics(champion_scored, per_impression))
        paired = paired_ndcg(candidate_scored, champion_scored, config.confidence)

    reference_metrics: dict = {}
    comparisons = None
    notes: list[str] = []
    if config.reference_check != OFF:
        progress("scoring the test split with the no-training references")
        with tempfile.TemporaryDirectory(prefix="mlpr-references-") as cache_dir:
            scored_references, notes = references.score_references(
                examples_dir, schema, model_dir, cache_dir
            )
        for note in notes:
            progress(note)
        reference_metrics = {n: compute_metrics(s) for n, s in scored_references.items()}
        comparisons = references.compare_with_references(
            candidate_scored, candidate, scored_references, reference_metrics, config.confidence
        )

    verdict = decide(
        candidate,
        champion,
        config,
        paired,
        champion_uri=champion_dir,
        repository=os.path.join(model_base, model_name),
        not_comparable=not_comparable,
        references=comparisons,
    )
    evaluation = EvaluationReport(
        split=test_pattern,
        candidate_uri=candidate_dir,
        champion_uri=champion_dir,
        candidate_metrics=candidate,
        champion_metrics=champion,
        candidate=analyse(candidate_scored, per_impression),
        champion=None if champion_scored is None else analyse(champion_scored, per_impression),
        blessing=verdict.to_dict(),
        reference_metrics=reference_metrics,
        reference_notes=tuple(notes),
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
        "references": {name: _json_metrics(m) for name, m in reference_metrics.items()},
    }
    with open(os.path.join(blessing_dir, layout.EVAL_RESULTS_FILE), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, allow_nan=False)
    evaluation.write(blessing_dir)
    return verdict, evaluation


def trained_targets(model_dir: str) -> str:
    """The `targets` the model in `model_dir` was trained on (its train_info.json): "rate"
    (each task's count per impression, the default) or "any" (count > 0)."""
    path = os.path.join(model_dir, layout.TRAIN_INFO_FILE)
    if not os.path.isfile(path):
        return "rate"
    with open(path, encoding="utf-8") as f:
        return str(json.load(f).get("config", {}).get("targets", "rate"))


def _json_metrics(metrics: dict) -> dict:
    """NaN (a metric undefined on this split, e.g. AUC with one class) as JSON null."""
    return {k: None if math.isnan(v) else v for k, v in metrics.items()}
