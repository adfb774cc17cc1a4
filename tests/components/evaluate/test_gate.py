import json
import math
import re

import pytest
from evaluate_testlib import ranking_rows, scored_split

from components.evaluate.gate import decide
from components.evaluate.gate_config import GateConfig
from components.evaluate.references import ReferenceComparison, compare_with_references
from components.evaluate.scoring import compute_metrics
from components.evaluate.stats import PairedComparison
from contract.schema import DEFAULT_TASKS as TASKS

FLOORS = {"auc": 0.5, "ndcg@5": 0.2}


def config(**overrides) -> GateConfig:
    return GateConfig(**{"floors": FLOORS, "significance": "off", "tasks": TASKS, **overrides})


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


def paired(mean: float, low: float, high: float, p: float, queries: int = 40) -> dict:
    comparison = PairedComparison(queries, mean, low, high, p, 0.95)
    return dict.fromkeys(TASKS, comparison)


def failed(blessing) -> list[tuple[str, str]]:
    return [(c.check, c.metric) for c in blessing.checks if not c.passed]


def test_better_than_champion_is_blessed():
    blessing = decide(metrics(auc=0.75), metrics(auc=0.7), config(), champion_uri="/m/mlpr/3")
    assert blessing.blessed and not blessing.forced and not blessing.first_run
    assert failed(blessing) == []
    # Floors and champion, for every gated metric of every task.
    assert len(blessing.checks) == 2 * len(FLOORS) * len(TASKS)
    assert blessing.reasons[0] == "blessed: all 12 checks passed"
    assert blessing.reasons[1] == (
        "compared with champion /m/mlpr/3 (allowed drops: click/auc 0, atc/auc 0, "
        "purchase/auc 0, click/ndcg@5 0, atc/ndcg@5 0, purchase/ndcg@5 0; no significance check)"
    )
    assert blessing.champion_uri == "/m/mlpr/3"


def test_equal_to_champion_passes_with_zero_drop():
    assert decide(metrics(), metrics(), config()).blessed


def test_worse_than_champion_names_the_metric():
    candidate = metrics(overrides={"purchase/auc": 0.65})
    gate = config(default_max_drop=0.01)
    blessing = decide(candidate, metrics(auc=0.7), gate, champion_uri="/m/mlpr/3")
    assert not blessing.blessed
    assert failed(blessing) == [("champion", "purchase/auc")]
    check = blessing.failed[0]
    assert (check.value, check.outcome) == (0.65, "fail")
    assert check.threshold == pytest.approx(0.69)
    assert blessing.reasons[0] == "not blessed: 1 of 12 checks failed"
    assert "purchase/auc = 0.6500 < champion 0.7000 - max_drop 0.0100 = 0.6900" in blessing.reasons


def test_per_task_keys_override_metric_keys():
    gate = GateConfig.from_parameters(
        auc_floor=0.6,
        ndcg5_floor=0.0,
        metric_floors={"purchase/auc": 0.8, "ndcg@10": 0.5},
        max_drop_vs_champion=0.0,
        max_drop_by_metric={"auc": 0.05, "click/auc": 0.0},
        significance="off",
    ).for_tasks(TASKS)
    assert gate.floor("click/auc") == 0.6 and gate.floor("purchase/auc") == 0.8
    assert gate.floor("atc/ndcg@10") == 0.5
    assert gate.allowed_drop("atc/auc") == 0.05 and gate.allowed_drop("click/auc") == 0.0
    assert gate.allowed_drop("click/ndcg@5") == 0.0
    candidate = metrics(auc=0.75, ndcg5=0.6)
    blessing = decide(candidate, metrics(auc=0.78, ndcg5=0.6), gate)
    # purchase/auc 0.75 < its own floor 0.8; click/auc may not drop at all, atc/auc may drop 0.05.
    assert failed(blessing) == [("floor", "purchase/auc"), ("champion", "click/auc")]
    assert {c.metric for c in blessing.checks if c.check == "floor"} >= {"purchase/ndcg@10"}


def test_metric_named_only_by_a_drop_is_checked_against_the_champion_only():
    gate = config(floors={"auc": 0.5}, max_drop={"purchase/ndcg@10": 0.0})
    blessing = decide(metrics(), metrics(overrides={"purchase/ndcg@10": 0.9}), gate)
    assert failed(blessing) == [("champion", "purchase/ndcg@10")]
    assert not any(c.metric.endswith("ndcg@10") for c in blessing.checks if c.check == "floor")


def test_below_floor_is_not_blessed():
    blessing = decide(metrics(overrides={"click/ndcg@5": 0.1}), None, config())
    assert not blessing.blessed
    assert failed(blessing) == [("floor", "click/ndcg@5")]
    assert "click/ndcg@5 = 0.1000 < floor 0.2000" in blessing.reasons


def test_first_run_applies_floors_only_and_says_so():
    gate = config(significance="better")
    blessing = decide(metrics(), None, gate, repository="/models/mlpr")
    assert blessing.blessed and blessing.first_run
    assert {c.check for c in blessing.checks} == {"floor"}
    assert len(blessing.checks) == len(FLOORS) * len(TASKS)
    assert blessing.reasons[1] == (
        "no champion in /models/mlpr: first run, only floors apply "
        "(no comparison with a champion, no significance test)"
    )
    assert blessing.champion_uri is None and blessing.paired is None


class TestSignificance:
    def test_better_needs_the_interval_above_zero(self):
        gate = config(significance="better", default_max_drop=0.05)
        noisy = decide(metrics(), metrics(), gate, paired(0.004, -0.01, 0.018, 0.57))
        (check,) = [c for c in noisy.checks if c.check == "significance"]
        assert not noisy.blessed and check.metric == "purchase/ndcg@5"
        assert (check.value, check.threshold, check.outcome) == (-0.01, 0.0, "fail")
        assert check.reason == (
            "purchase/ndcg@5 paired difference (candidate - champion) over 40 queries: mean "
            "+0.0040, 95% CI [-0.0100, +0.0180], p = 0.57: not significantly better: the CI's "
            "lower bound is not above 0"
        )
        real = decide(metrics(), metrics(), gate, paired(0.03, 0.01, 0.05, 0.002))
        assert real.blessed and real.checks[-1].value == 0.01

    def test_not_worse_blocks_only_a_significant_loss(self):
        gate = config(significance="not_worse", significance_task="click")
        noisy = decide(metrics(), metrics(), gate, paired(-0.004, -0.02, 0.01, 0.6))
        assert noisy.blessed and noisy.checks[-1].metric == "click/ndcg@5"
        loss = decide(metrics(), metrics(), gate, paired(-0.03, -0.05, -0.01, 0.003))
        assert not loss.blessed
        assert loss.checks[-1].reason.endswith("significantly worse: the whole CI is below 0")

    def test_too_few_queries(self):
        one = paired(0.5, 0.5, 0.5, math.nan, queries=1)
        assert not decide(metrics(), metrics(), config(significance="better"), one).blessed
        assert decide(metrics(), metrics(), config(significance="not_worse"), one).blessed

    def test_undefined_comparison(self):
        gate = config(significance="better")
        broken_candidate = metrics(overrides={"purchase/ndcg@5": math.nan})
        blessing = decide(broken_candidate, metrics(), gate, {t: None for t in TASKS})
        assert ("significance", "purchase/ndcg@5") in failed(blessing)
        broken_champion = decide(metrics(), metrics(), gate, {t: None for t in TASKS})
        assert broken_champion.blessed
        assert "the champion's predictions are not finite" in broken_champion.checks[-1].reason

    def test_needs_the_comparison(self):
        with pytest.raises(ValueError, match="needs the paired comparison of 'purchase'"):
            decide(metrics(), metrics(), config(significance="better"))


def test_force_push_blesses_and_records_what_failed():
    gate = config(force_push=True)
    blessing = decide(metrics(auc=0.45), metrics(auc=0.7), gate, champion_uri="/m/1")
    assert blessing.blessed and blessing.forced
    data = blessing.to_dict()
    assert data["checks_passed"] is False
    assert data["failed_checks"] == [f"floor:{t}/auc" for t in TASKS] + [
        f"champion:{t}/auc" for t in TASKS
    ]
    assert data["reasons"][0].startswith(
        "blessed because force_push is set, although 6 of 12 checks failed: floor click/auc"
    )
    assert data["settings"]["force_push"] is True
    unneeded = decide(metrics(), None, gate)
    assert unneeded.blessed and not unneeded.forced
    assert unneeded.reasons[0] == "blessed: all 6 checks passed (force_push was set but not needed)"


def test_nan_candidate_fails_as_undefined():
    candidate = metrics(overrides={"purchase/auc": float("nan")})
    blessing = decide(candidate, metrics(), config())
    assert not blessing.blessed
    assert failed(blessing) == [("floor", "purchase/auc"), ("champion", "purchase/auc")]
    assert all("undefined (NaN)" in c.reason for c in blessing.failed)


def test_nan_champion_does_not_block():
    blessing = decide(metrics(), metrics(overrides={"click/auc": float("nan")}), config())
    assert blessing.blessed
    check = next(c for c in blessing.checks if c.check == "champion" and c.metric == "click/auc")
    assert "champion's value is undefined" in check.reason


def test_json_shape_and_nan_as_null():
    blessing = decide(
        metrics(overrides={"purchase/auc": float("nan")}), None, config(), repository="/r"
    )
    data = json.loads(blessing.to_json())
    assert data["blessed"] is False and data["first_run"] is True and data["paired"] is None
    assert data["champion_uri"] is None
    assert data["reasons"][:2] == [
        "not blessed: 1 of 6 checks failed",
        "no champion in /r: first run, only floors apply "
        "(no comparison with a champion, no significance test)",
    ]
    assert data["checks"][0] == {
        "check": "floor",
        "metric": "click/auc",
        "value": 0.7,
        "threshold": 0.5,
        "passed": True,
        "outcome": "pass",
        "reason": "click/auc = 0.7000 >= floor 0.5000",
    }
    nan_check = next(c for c in data["checks"] if c["metric"] == "purchase/auc")
    assert nan_check["value"] is None and nan_check["outcome"] == "fail"


def test_missing_metric_is_a_clear_error():
    with pytest.raises(ValueError, match="candidate metrics have no 'click/ndcg@3'"):
        decide(metrics(), None, config(floors={"ndcg@3": 0.1}))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"floors": {}}, "at least one gated metric"),
        ({"floors": {"a/b/c": 0.5}}, "'metric' or 'task/metric'"),
        ({"floors": {"/auc": 0.5}}, "names no task"),
        ({"floors": {"click/": 0.5}}, "names no metric"),
        ({"floors": {"auc": math.nan}}, "must be a finite number"),
        ({"floors": {"auc": "high"}}, "must be a finite number"),
        ({"max_drop": {"auc": -0.1}}, "must be >= 0"),
        ({"default_max_drop": -0.1}, "default_max_drop must be"),
        ({"significance": "maybe"}, "significance must be one of"),
        ({"significance_task": "click/ndcg@5"}, "significance_task must be a task's name"),
        ({"confidence": 1.0}, "confidence must be in"),
        ({"reference_check": "block"}, r"reference_check must be one of \('gate', 'warn', 'off'\)"),
        ({"reference_alpha": 0.0}, "reference_alpha must be in"),
    ],
)
def test_rejects_bad_configuration(settings, message):
    with pytest.raises(ValueError, match=message):
        GateConfig(**{"floors": FLOORS, **settings})


class TestTasksOfTheSchema:
    """Task names are the evaluated schema's: checked when the gate is given them."""

    def test_a_key_naming_a_task_not_in_the_schema_is_refused_when_applied(self):
        gate = GateConfig(floors={"auc": 0.5, "favorite/auc": 0.7})  # any name at first
        assert gate.for_tasks(("click", "favorite", "atc", "purchase")).floor("favorite/auc") == 0.7
        message = (
            "unknown task 'favorite' in floors key 'favorite/auc': the schema's tasks are "
            "['click', 'atc', 'purchase']"
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            gate.for_tasks(TASKS)
        drop = GateConfig(floors=FLOORS, max_drop={"view/ndcg@5": 0.0})
        with pytest.raises(ValueError, match=r"unknown task 'view' in max_drop key"):
            drop.for_tasks(TASKS)

    def test_a_significance_task_not_in_the_schema_is_refused(self):
        gate = GateConfig(floors=FLOORS, significance_task="favorite")
        with pytest.raises(ValueError, match=r"significance_task must be one of the schema's "):
            gate.for_tasks(TASKS)
        assert gate.for_tasks(("click", "favorite")).paired_key == "favorite/ndcg@5"

    def test_no_significance_task_is_the_funnels_last(self):
        assert GateConfig(floors=FLOORS).significance_task == ""
        assert GateConfig(floors=FLOORS).for_tasks(TASKS).paired_key == "purchase/ndcg@5"
        assert GateConfig(floors=FLOORS, tasks=("click", "atc")).main_task == "atc"
        four = GateConfig(floors=FLOORS, significance="better").for_tasks(
            ("click", "favorite", "atc", "purchase")
        )
        both = four_task_metrics()
        blessing = decide(both, both, four, paired4())
        assert blessing.checks[-1].metric == "purchase/ndcg@5"

    def test_every_task_of_the_schema_is_gated(self):
        four = ("click", "favorite", "atc", "purchase")
        gate = GateConfig(floors=FLOORS).for_tasks(four)
        assert gate.gated() == tuple(f"{t}/{m}" for m in ("auc", "ndcg@5") for t in four)
        one = decide({"click/auc": 0.7, "click/ndcg@5": 0.6}, None, gate.for_tasks(("click",)))
        assert [c.metric for c in one.checks] == ["click/auc", "click/ndcg@5"]
        assert one.blessed

    def test_a_gate_without_tasks_cannot_be_applied(self):
        with pytest.raises(ValueError, match="does not know the evaluated tasks"):
            decide(metrics(), None, GateConfig(floors=FLOORS))


def four_task_metrics() -> dict[str, float]:
    return {
        f"{t}/{m}": 0.7 for t in ("click", "favorite", "atc", "purchase") for m in ("auc", "ndcg@5")
    }


def paired4() -> dict:
    comparison = PairedComparison(40, 0.03, 0.01, 0.05, 0.002, 0.95)
    return dict.fromkeys(("click", "favorite", "atc", "purchase"), comparison)


ZERO_SHOT = "zero-shot all-minilm-l6-v2"


def below(p_less: float, mean: float = -0.085, queries: int = 63) -> dict:
    """purchase: the candidate (0.612) against the best reference (0.697)."""
    paired = PairedComparison(queries, mean, mean - 0.05, mean + 0.05, 2 * p_less, 0.95)
    return {"purchase": ReferenceComparison(ZERO_SHOT, 0.612, 0.697, paired, p_less)}


class TestReferenceCheck:
    CANDIDATE = metrics(overrides={"purchase/ndcg@5": 0.612})

    def test_significantly_below_the_best_reference_is_refused(self):
        blessing = decide(self.CANDIDATE, None, config(), repository="/m", references=below(0.0012))
        assert not blessing.blessed and blessing.first_run
        assert failed(blessing) == [("reference", "purchase/ndcg@5")]
        check = blessing.failed[0]
        assert (check.value, check.threshold, check.outcome) == (0.0012, 0.05, "fail")
        reason = (
            "purchase/ndcg@5 = 0.6120 is significantly below reference zero-shot "
            "all-minilm-l6-v2 0.6970 (paired over 63 queries: -0.0850, one-sided p = 0.0012)"
        )
        assert check.reason == reason
        assert blessing.reasons == (
            "not blessed: 1 of 7 checks failed",
            "no champion in /m: first run, only floors and the reference check apply "
            "(no comparison with a champion, no significance test)",
            reason,
        )
        data = blessing.to_dict()
        assert data["failed_checks"] == ["reference:purchase/ndcg@5"]
        assert data["references"]["purchase"]["reference"] == ZERO_SHOT
        assert data["references"]["purchase"]["paired"]["queries"] == 63
        assert data["settings"]["reference_check"] == "gate"

    def test_not_significantly_below_passes(self):
        blessing = decide(self.CANDIDATE, None, config(), references=below(0.06))
        assert blessing.blessed
        (check,) = [c for c in blessing.checks if c.check == "reference"]
        assert check.passed and check.reason.startswith(
            "purchase/ndcg@5 = 0.6120 is not significantly below reference zero-shot"
        )

    def test_too_few_queries_to_test_does_not_block(self):
        comparison = below(math.nan, queries=1)
        blessing = decide(self.CANDIDATE, None, config(), references=comparison)
        assert blessing.blessed
        assert "cannot be tested, so it does not block" in blessing.checks[-1].reason

    def test_warn_records_but_blesses(self):
        gate = config(reference_check="warn")
        blessing = decide(self.CANDIDATE, None, gate, references=below(0.0012))
        assert blessing.blessed and not blessing.forced and blessing.checks_passed
        assert failed(blessing) == [("reference", "purchase/ndcg@5")]  # not passed...
        assert blessing.failed == () and len(blessing.warnings) == 1  # ...but only warns
        data = blessing.to_dict()
        assert data["checks"][-1]["outcome"] == "warn"
        assert data["failed_checks"] == [] and data["warnings"] == ["reference:purchase/ndcg@5"]
        assert data["reasons"][0] == (
            "blessed: 6 of 7 checks passed; the other 1 only warn (reference_check is 'warn')"
        )
        assert data["reasons"][-1].startswith("warning: purchase/ndcg@5 = 0.6120 is significantly")

    def test_off_has_no_reference_check(self):
        gate = config(reference_check="off")
        blessing = decide(self.CANDIDATE, None, gate, repository="/m", references=below(0.0012))
        assert blessing.blessed and {c.check for c in blessing.checks} == {"floor"}
        assert blessing.references is None
        assert "first run, only floors apply" in blessing.reasons[1]

    def test_applies_beside_a_champion_and_force_push_overrides_it(self):
        gate = config(force_push=True)
        blessing = decide(
            self.CANDIDATE, self.CANDIDATE, gate, champion_uri="/m/1", references=below(0.0012)
        )
        assert blessing.blessed and blessing.forced
        assert failed(blessing) == [("reference", "purchase/ndcg@5")]
        assert blessing.reasons[0].endswith("1 of 13 checks failed: reference purchase/ndcg@5")

    def test_from_scored_splits_the_best_reference_is_the_one_compared(self):
        """A candidate ranking by noise against two references: the signal (best on every
        task) and the noise itself. The check compares with the signal and refuses."""
        rows = ranking_rows(40, 6, seed=0)
        candidate = scored_split(rows, lambda x, d: d)
        scored = {
            "noise": scored_split(rows, lambda x, d: d),
            "signal": scored_split(rows, lambda x, d: x),
        }
        reference_metrics = {n: compute_metrics(s) for n, s in scored.items()}
        candidate_metrics = compute_metrics(candidate)
        comparisons = compare_with_references(
            candidate, candidate_metrics, scored, reference_metrics
        )
        for task in TASKS:
            c = comparisons[task]
            assert c.reference == "signal"
            assert c.reference_value == pytest.approx(reference_metrics["signal"][f"{task}/ndcg@5"])
            gap = candidate_metrics[f"{task}/ndcg@5"] - c.reference_value
            assert c.paired.mean_difference == pytest.approx(gap) and gap < -0.2
            assert c.p_less < 1e-6
        blessing = decide(
            candidate_metrics, None, config(floors={"ndcg@5": 0.0}), references=comparisons
        )
        assert [c.metric for c in blessing.failed] == [f"{t}/ndcg@5" for t in TASKS]
        assert all("below reference signal" in c.reason for c in blessing.failed)
        # The candidate is the noise reference itself: every difference with it is 0...
        same = compare_with_references(
            candidate,
            candidate_metrics,
            {"noise": scored["noise"]},
            {"noise": reference_metrics["noise"]},
        )
        assert math.isnan(same["click"].p_less)
        # ...which is no evidence of being worse.
        assert decide(
            candidate_metrics, None, config(floors={"ndcg@5": 0.0}), references=same
        ).blessed
