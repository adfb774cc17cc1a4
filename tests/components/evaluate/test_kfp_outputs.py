"""The evaluate step's ClassificationMetrics slots: the k-th task of the funnel in slot k, for
a funnel shorter or longer than the slots."""

import numpy as np
import pytest
from kfp import dsl

from components.evaluate.analysis import analyse_task
from components.evaluate.kfp_outputs import (
    CLASSIFICATION_SLOTS,
    log_classifications,
    log_references,
    reference_metric_name,
    slot_name,
)


def analyses(tasks) -> dict:
    query = np.array(["a", "a", "b", "b"], dtype=object)
    labels, scores = np.array([1, 0, 0, 1]), np.array([0.9, 0.2, 0.4, 0.6])
    return {task: analyse_task(query, labels, scores) for task in tasks}


def slots(tmp_path) -> list:
    return [
        dsl.ClassificationMetrics(uri=str(tmp_path / slot_name(k)))
        for k in range(1, CLASSIFICATION_SLOTS + 1)
    ]


def test_four_slots_named_by_position():
    assert CLASSIFICATION_SLOTS == 4
    assert [slot_name(k) for k in (1, 4)] == ["task_1_classification", "task_4_classification"]


def test_three_tasks_leave_the_last_slot_unused(tmp_path):
    outputs = slots(tmp_path)
    log_classifications(outputs, analyses(("click", "atc", "purchase")))
    assert [o.metadata.get("task") for o in outputs] == ["click", "atc", "purchase", None]
    for output, task in zip(outputs, ("click", "atc", "purchase"), strict=False):
        specs = output.metadata["confusionMatrix"]["annotationSpecs"]
        assert specs == [{"displayName": f"no {task}"}, {"displayName": task}]
        assert len(output.metadata["confidenceMetrics"]) >= 2
    assert outputs[3].metadata == {
        "unused": "the funnel has only 3 task(s) (click, atc, purchase): no task 4"
    }


def test_five_tasks_fill_every_slot_and_name_the_task_left_out(tmp_path):
    tasks = ("click", "favorite", "atc", "purchase", "repeat")
    outputs = slots(tmp_path)
    log_classifications(outputs, analyses(tasks))
    assert [o.metadata["task"] for o in outputs] == list(tasks[:4])
    last = outputs[3].metadata
    assert "confusionMatrix" in last and last["task"] == "purchase"
    assert last["left_out"] == ["repeat"]
    assert last["left_out_reason"] == (
        "the funnel has 5 tasks and the step 4 ROC outputs: repeat left out here; their ROC "
        "curves are in the HTML report and their metrics in the Metrics artifact"
    )
    assert all("left_out" not in o.metadata for o in outputs[:3])


def test_an_undefined_task_says_why(tmp_path):
    query = np.array(["a", "b"], dtype=object)
    undefined = {"click": analyse_task(query, np.zeros(2), np.array([0.1, 0.2]))}
    outputs = slots(tmp_path)
    log_classifications(outputs, undefined)
    assert outputs[0].metadata["task"] == "click"
    assert outputs[0].metadata["undefined"].startswith("no ROC curve or confusion matrix")
    assert "unused" in outputs[1].metadata


def test_needs_a_slot():
    with pytest.raises(ValueError, match="at least one ClassificationMetrics slot"):
        log_classifications([], analyses(("click",)))


def test_reference_metrics_have_kfp_legal_names(tmp_path):
    assert reference_metric_name("zero-shot all-minilm-l6-v2", "click/ndcg@5") == (
        "reference_zero_shot_all_minilm_l6_v2_click_ndcg_at_5"
    )
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    references = {
        "bm25": {"click/ndcg@5": 0.7, "click/auc": float("nan"), "click/positives": 3},
        "zero-shot /models/My Encoder": {"click/ndcg@5": 0.8},
    }
    log_references(metrics, references, ("click",))
    # Undefined values and counts are left out; only letters, digits and underscores.
    assert metrics.metadata == {
        "reference_bm25_click_ndcg_at_5": 0.7,
        "reference_zero_shot_models_my_encoder_click_ndcg_at_5": 0.8,
    }
