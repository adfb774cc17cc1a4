"""Fill the evaluate step's kfp visual artifacts (Metrics, ClassificationMetrics).

The Kubeflow UI draws a ClassificationMetrics artifact's ROC curve and confusion matrix from
its metadata, so both are kept small: the ROC has at most ~100 points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from components.evaluate.analysis import TaskAnalysis


def metric_name(key: str) -> str:
    """The kfp Metrics name of a metric key: "click/ndcg@5" -> "click_ndcg_at_5"."""
    return key.replace("/", "_").replace("@", "_at_")


def log_metrics(output, metrics: Mapping[str, float]) -> None:
    """Every defined metric into a kfp Metrics artifact; undefined (NaN) ones are named."""
    for key, value in metrics.items():
        if isinstance(value, float) and math.isnan(value):
            print(f"metric {key} is undefined (NaN) on this split; not logged")
            continue
        output.log_metric(metric_name(key), value)


def confusion_categories(task: str) -> list[str]:
    """Row/column names of a task's confusion matrix, e.g. ["no click", "click"]."""
    return [f"no {task}", task]


def log_classification(output, task: str, analysis: TaskAnalysis) -> None:
    """A task's ROC curve and confusion matrix into a kfp ClassificationMetrics artifact.

    When the split has a single class (or the predictions are not finite) both are
    undefined: nothing is drawn and the metadata says why.
    """
    output.metadata["task"] = task
    if analysis.roc is None or analysis.confusion is None:
        output.metadata["undefined"] = (
            f"no ROC curve or confusion matrix for {task}: the test split has a single class "
            "or the predictions are not finite"
        )
        return
    roc = analysis.roc
    output.log_roc_curve(list(roc.fpr), list(roc.tpr), list(roc.thresholds))
    output.log_confusion_matrix(
        confusion_categories(task), [list(row) for row in analysis.confusion.matrix]
    )
    output.metadata["confusion_threshold"] = analysis.confusion.threshold
    output.metadata["confusion_threshold_rule"] = analysis.confusion.rule
