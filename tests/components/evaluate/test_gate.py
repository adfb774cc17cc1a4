import json
import math

import pytest

from components.evaluate.gate import decide
from components.schema import TASKS

FLOORS = {"auc": 0.5, "ndcg@5": 0.2}


def metrics(
    auc: float = 0.7, ndcg5: float = 0.6, overrides: dict | None = None
) -> dict[str, float]:
    values = {}
    for task in TASKS:
        values[f"{task}/auc"] = auc
        values[f"{task}/ndcg@5"] = ndcg5
        values[f"{task}/ndcg@10"] = ndcg5  # not gated
    values.update(overrides or {})
    return values


def failed(blessing) -> list[tuple[str, str]]:
    return [(c.check, c.metric) for c in blessing.checks if not c.passed]


def test_better_than_champion_is_blessed():
    blessing = decide(
        metrics(auc=0.75), metrics(auc=0.7), FLOORS, max_drop=0.0, champion_uri="/m/mlpr/3"
    )
    assert blessing.blessed
    assert failed(blessing) == []
    # Floors and champion, for every gated metric of every task.
    assert len(blessing.checks) == 2 * len(FLOORS) * len(TASKS)
    assert blessing.reasons[0] == "blessed: all 12 checks passed"
    assert blessing.reasons[1] == "compared with champion /m/mlpr/3 with max_drop 0.0"
    assert blessing.champion_uri == "/m/mlpr/3"


def test_equal_to_champion_passes_with_zero_drop():
    assert decide(metrics(), metrics(), FLOORS, max_drop=0.0).blessed


def test_worse_than_champion_names_the_metric():
    candidate = metrics(overrides={"purchase/auc": 0.65})
    blessing = decide(candidate, metrics(auc=0.7), FLOORS, max_drop=0.01, champion_uri="/m/mlpr/3")
    assert not blessing.blessed
    assert failed(blessing) == [("champion", "purchase/auc")]
    check = next(c for c in blessing.checks if not c.passed)
    assert check.value == 0.65
    assert check.threshold == pytest.approx(0.69)
    assert blessing.reasons[0] == "not blessed: 1 of 12 checks failed"
    assert "purchase/auc = 0.6500 < champion 0.7000 - max_drop 0.0100 = 0.6900" in blessing.reasons


def test_small_drop_within_tolerance_is_blessed():
    blessing = decide(
        metrics(overrides={"purchase/auc": 0.695}), metrics(auc=0.7), FLOORS, max_drop=0.01
    )
    assert blessing.blessed


def test_below_floor_is_not_blessed():
    blessing = decide(metrics(overrides={"click/ndcg@5": 0.1}), None, FLOORS, max_drop=0.0)
    assert not blessing.blessed
    assert failed(blessing) == [("floor", "click/ndcg@5")]
    assert "click/ndcg@5 = 0.1000 < floor 0.2000" in blessing.reasons


def test_first_run_applies_floors_only_and_says_so():
    blessing = decide(metrics(), None, FLOORS, max_drop=0.0, repository="/models/mlpr")
    assert blessing.blessed
    assert {c.check for c in blessing.checks} == {"floor"}
    assert len(blessing.checks) == len(FLOORS) * len(TASKS)
    assert "no champion in /models/mlpr: only floors apply" in blessing.reasons
    assert blessing.champion_uri is None


def test_nan_candidate_fails_as_undefined():
    candidate = metrics(overrides={"purchase/auc": float("nan")})
    blessing = decide(candidate, metrics(), FLOORS, max_drop=0.0)
    assert not blessing.blessed
    assert failed(blessing) == [("floor", "purchase/auc"), ("champion", "purchase/auc")]
    assert all("undefined (NaN)" in c.reason for c in blessing.checks if not c.passed)


def test_nan_champion_does_not_block():
    blessing = decide(
        metrics(), metrics(overrides={"click/auc": float("nan")}), FLOORS, max_drop=0.0
    )
    assert blessing.blessed
    check = next(c for c in blessing.checks if c.check == "champion" and c.metric == "click/auc")
    assert "champion's value is undefined" in check.reason


def test_json_shape_and_nan_as_null():
    blessing = decide(
        metrics(overrides={"purchase/auc": float("nan")}),
        None,
        FLOORS,
        max_drop=0.0,
        repository="/r",
    )
    data = json.loads(blessing.to_json())
    assert data["blessed"] is False
    assert data["champion_uri"] is None
    assert data["reasons"][:2] == [
        "not blessed: 1 of 6 checks failed",
        "no champion in /r: only floors apply",
    ]
    first = data["checks"][0]
    assert set(first) == {"check", "metric", "value", "threshold", "passed", "reason"}
    assert first == {
        "check": "floor",
        "metric": "click/auc",
        "value": 0.7,
        "threshold": 0.5,
        "passed": True,
        "reason": "click/auc = 0.7000 >= floor 0.5000",
    }
    nan_check = next(c for c in data["checks"] if c["metric"] == "purchase/auc")
    assert nan_check["value"] is None and nan_check["passed"] is False


def test_missing_metric_is_a_clear_error():
    with pytest.raises(ValueError, match="candidate metrics have no 'click/ndcg@3'"):
        decide(metrics(), None, {"ndcg@3": 0.1}, max_drop=0.0)


@pytest.mark.parametrize(
    ("floors", "max_drop", "message"),
    [
        ({}, 0.0, "at least one gated metric"),
        ({"click/auc": 0.5}, 0.0, "not per task"),
        ({"auc": math.nan}, 0.0, "must be finite"),
        (FLOORS, -0.1, "max_drop must be"),
    ],
)
def test_rejects_bad_configuration(floors, max_drop, message):
    with pytest.raises(ValueError, match=message):
        decide(metrics(), None, floors, max_drop=max_drop)
