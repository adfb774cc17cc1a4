"""Fill the evaluate step's kfp visual artifacts (Metrics, ClassificationMetrics).

The Kubeflow UI draws a ClassificationMetrics artifact's ROC curve and confusion matrix from
its metadata, so both are kept small: the ROC has at most ~100 points.

A kfp component's outputs are fixed when it is compiled, while the tasks come from the data's
schema: the step has CLASSIFICATION_SLOTS positional ClassificationMetrics outputs
(`task_1_classification`, ...), slot k holding the funnel's k-th task.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from components.evaluate.analysis import TaskAnalysis

# The ClassificationMetrics outputs of the evaluate step: the length of the ESM² funnel
# (click -> add-to-cart -> purchase, or with a favorite stage).
CLASSIFICATION_SLOTS = 4


def slot_name(index: int) -> str:
    """The output name of the slot of the funnel's `index`-th task (from 1)."""
    return f"task_{index}_classification"


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


# The metrics of each no-training reference in the Metrics artifact, per task.
REFERENCE_METRICS = ("auc", "ndcg@1", "ndcg@5", "ndcg@10")


def reference_metric_name(reference: str, key: str) -> str:
    """The kfp Metrics name of a reference's metric: ("zero-shot all-minilm-l6-v2",
    "click/ndcg@5") -> "reference_zero_shot_all_minilm_l6_v2_click_ndcg_at_5" (letters,
    digits and underscores only)."""
    slug = re.sub(r"[^0-9A-Za-z]+", "_", reference).strip("_").lower()
    return f"reference_{slug}_{re.sub(r'[^0-9A-Za-z_]+', '_', metric_name(key))}"


def log_references(
    output, references: Mapping[str, Mapping[str, float]], tasks: Sequence[str]
) -> None:
    """Each reference's AUC and NDCG@1/5/10 per task into a kfp Metrics artifact, named by
    reference_metric_name; undefined (NaN) ones are left out."""
    for reference, metrics in references.items():
        for task in tasks:
            for metric in REFERENCE_METRICS:
                value = metrics.get(f"{task}/{metric}")
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                output.log_metric(reference_metric_name(reference, f"{task}/{metric}"), value)


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


def log_classifications(slots: Sequence, analyses: Mapping[str, TaskAnalysis]) -> None:
    """Each task's ROC curve and confusion matrix into its slot, in funnel order (the order of
    `analyses`). A slot beyond the funnel's last task says so in its metadata ("unused");
    with more tasks than slots, the last slot's metadata names the tasks left out
    ("left_out"), whose curves are in the HTML report and metrics in the Metrics artifact."""
    if not slots:
        raise ValueError("log_classifications needs at least one ClassificationMetrics slot")
    tasks = list(analyses)
    for index, output in enumerate(slots):
        if index < len(tasks):
            log_classification(output, tasks[index], analyses[tasks[index]])
        else:
            output.metadata["unused"] = (
                f"the funnel has only {len(tasks)} task(s) ({', '.join(tasks)}): no task "
                f"{index + 1}"
            )
    left_out = tasks[len(slots) :]
    if left_out:
        slots[-1].metadata["left_out"] = left_out
        slots[-1].metadata["left_out_reason"] = (
            f"the funnel has {len(tasks)} tasks and the step {len(slots)} ROC outputs: "
            f"{', '.join(left_out)} left out here; their ROC curves are in the HTML report and "
            "their metrics in the Metrics artifact"
        )
