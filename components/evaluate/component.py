"""Kubeflow component: evaluate the candidate model on the test split and bless it (or not)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    examples: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    click_classification: Output[ClassificationMetrics],
    atc_classification: Output[ClassificationMetrics],
    purchase_classification: Output[ClassificationMetrics],
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
    significance_task: str = "purchase",
    significance_confidence: float = 0.95,
    force_push: bool = False,
) -> bool:
    """Scores the candidate and the production model on the test split and decides whether to push.

    For every task (click, add-to-cart, purchase) it computes AUC and NDCG@1/5/10 of the
    candidate's probabilities, grouped by query, and the same for the model in production
    (the champion: the highest numeric version under model_base/model_name), if any.

    The gate. Floors: every task's AUC must reach auc_floor and its NDCG@5 ndcg5_floor;
    metric_floors adds or overrides floors, keyed "metric" (every task) or "task/metric".
    With a champion, every gated metric must also stay within its allowed drop of the
    champion's value (max_drop_vs_champion, overridden per "metric" or "task/metric" by
    max_drop_by_metric), and the per-query paired NDCG@5 difference on significance_task must
    be significantly positive (champion_significance "better": a tiny noisy gain does not
    displace the champion), not significantly negative ("not_worse"), or is not tested
    ("off"). On the first run only the floors apply. force_push blesses the candidate even
    when checks fail; the blessing records that it was forced and which checks failed.

    Args:
        examples: raw splits from ingest; the test split is used.
        model: the trained candidate; its SavedModel is in model/saved_model.
        metrics: every candidate metric, e.g. click_auc, purchase_ndcg_at_5.
        click_classification: ROC curve and confusion matrix of the click probability.
        atc_classification: the same for add-to-cart.
        purchase_classification: the same for purchase.
        report: the HTML report: verdict, checks, candidate vs champion, paired tests, plots.
        blessing: blessing.json (verdict, every check, the paired tests), eval_results.json
            (candidate and champion metrics) and report.json (the report's content).
        model_base: root of the TF Serving model repository (a mounted path).
        model_name: the model's directory under model_base.
        auc_floor: minimum AUC every task must reach.
        ndcg5_floor: minimum NDCG@5 every task must reach.
        metric_floors: more floors, e.g. {"purchase/auc": 0.7, "ndcg@10": 0.3}.
        max_drop_vs_champion: how far below the champion a gated metric may fall (0 = no worse).
        max_drop_by_metric: allowed drops per metric, e.g. {"ndcg@5": 0.01, "purchase/auc": 0}.
        champion_significance: "better", "not_worse" or "off" (see above).
        significance_task: the task whose paired NDCG@5 difference is tested.
        significance_confidence: level of the paired confidence interval.
        force_push: bless even when checks fail.

    Returns:
        Whether the candidate may be pushed (a plain bool output, so that `dsl.If` on it
        works both on Kubeflow and in kfp.local).
    """
    import os

    from components.evaluate.gate_config import GateConfig
    from components.evaluate.kfp_outputs import log_classification, log_metrics
    from components.evaluate.report_html import render_html
    from components.evaluate.report_text import render_text
    from components.evaluate.run import run_evaluation

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
    )
    verdict, evaluation = run_evaluation(
        examples.path, model.path, blessing.path, model_base, model_name, config
    )
    log_metrics(metrics, evaluation.candidate_metrics)
    outputs = {"click": click_classification, "atc": atc_classification}
    outputs["purchase"] = purchase_classification
    for task, output in outputs.items():
        log_classification(output, task, evaluation.candidate.tasks[task])
    blessing.metadata.update(
        blessed=verdict.blessed,
        forced=verdict.forced,
        reasons=list(verdict.reasons),
        champion_uri=evaluation.champion_uri or "",
    )
    os.makedirs(os.path.dirname(report.path) or ".", exist_ok=True)
    with open(report.path, "w", encoding="utf-8") as f:
        f.write(render_html(evaluation))
    print(render_text(evaluation))
    return verdict.blessed
