"""Kubeflow component: evaluate the candidate model on the test split and bless it (or not)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    examples: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    task_1_classification: Output[ClassificationMetrics],
    task_2_classification: Output[ClassificationMetrics],
    task_3_classification: Output[ClassificationMetrics],
    task_4_classification: Output[ClassificationMetrics],
    report: Output[HTML],
    blessing: Output[Artifact],
    model_base: str,
    model_name: str = "mlpr",
    auc_floor: float = 0.6,
    ndcg5_floor: float = 0.0,
    metric_floors: dict = {},  # noqa: B006 (kfp parameters declare defaults this way)
    max_drop_vs_champion: float = 0.0,
    max_drop_by_metric: dict = {},  # noqa: B006 (kfp parameters declare defaults this way)
    champion_significance: str = "better",
    significance_task: str = "",
    significance_confidence: float = 0.95,
    force_push: bool = False,
    relevance_encoder: str = "",
    reference_check: str = "gate",
) -> bool:
    """Evaluates the candidate and returns whether to push it; see components/evaluate/run.py.

    Args:
        examples: raw splits from ingest; the test split is used, for the tasks of its
            schema.json.
        model: the trained candidate; its SavedModel is in model/saved_model.
        metrics: every candidate metric, e.g. click_auc, purchase_ndcg_at_5, and each
            no-training reference's, e.g. reference_bm25_click_ndcg_at_5.
        task_1_classification: ROC curve and confusion matrix of the funnel's first task's
            probability (metadata "task" names it; kfp outputs are fixed, the tasks are the
            schema's).
        task_2_classification: the same for the second task.
        task_3_classification: the same for the third task.
        task_4_classification: the same for the fourth task. A slot past a shorter funnel's
            last task is empty (metadata "unused" says so); a longer funnel's further tasks
            are named in this slot's metadata ("left_out"), their curves in the report.
        report: the HTML report: verdict, checks, candidate vs champion, paired tests,
            references, plots.
        blessing: blessing.json (verdict, checks, paired tests), eval_results.json, report.json.
        model_base: root of the TF Serving model repository (a mounted path).
        model_name: the model's directory under model_base.
        auc_floor: minimum AUC every task must reach.
        ndcg5_floor: minimum NDCG@5 every task must reach.
        metric_floors: more floors, e.g. {"purchase/auc": 0.7, "ndcg@10": 0.3}; a task named
            must be one of the schema's.
        max_drop_vs_champion: how far below the champion a gated metric may fall (0 = no worse).
        max_drop_by_metric: allowed drops per metric, e.g. {"ndcg@5": 0.01, "purchase/auc": 0}.
        champion_significance: paired NDCG@5 test vs the champion: "better", "not_worse" or "off".
        significance_task: the task whose paired NDCG@5 difference is tested ("": the
            funnel's last task).
        significance_confidence: level of the paired confidence interval.
        force_push: bless even when checks fail.
        relevance_encoder: encoder preset labelling relevance from engagement ("": none).
        reference_check: the candidate's NDCG@5 against the best no-training reference (bm25,
            its encoder zero-shot, the schema's relevance-score features) per task, first
            runs included: "gate" (significantly below refuses it), "warn" (recorded, not
            blocking) or "off" (no references scored).
    """
    from components.step_log import quiet

    quiet()  # before TensorFlow loads (components/step_log.py)
    from components.lifeline import follow_runner

    follow_runner()  # a local run's step ends with the run (components/lifeline.py)

    from components.evaluate.run import evaluate_step

    return evaluate_step(
        examples.path, model.path, model_base, model_name, metrics,
        [task_1_classification, task_2_classification, task_3_classification,
         task_4_classification],
        report.path, blessing.path, blessing.metadata,
        auc_floor=auc_floor, ndcg5_floor=ndcg5_floor, metric_floors=metric_floors,
        max_drop_vs_champion=max_drop_vs_champion, max_drop_by_metric=max_drop_by_metric,
        champion_significance=champion_significance, significance_task=significance_task,
        significance_confidence=significance_confidence, force_push=force_push,
        relevance_encoder=relevance_encoder, reference_check=reference_check,
    )  # fmt: skip
