"""The blessing JSON of the evaluate step for a first-run, a better, a worse, a forced and a
barely-better candidate, on a synthetic test split of 40 queries x 6 products.

The engagement follows lexical_score; "strong" ranks by it, "weak" by an unrelated feature,
"jitter" by lexical_score mixed with 8% of that noise (a hair worse than strong).
"""

import os

import pytest
from evaluate_testlib import (
    DECOY,
    SIGNAL,
    EvaluateRun,
    install_champion,
    ranking_rows,
    save_scorer,
)

from components.push.component import push
from contract import layout
from contract import schema as S

FEATURES = S.RawSchema(ranking_features=(SIGNAL, DECOY))
MODELS = {
    "strong": lambda x, d: x,
    "weak": lambda x, d: d,
    "jitter": lambda x, d: 0.92 * x + 0.08 * d,
}
GATED = [f"{t}/{m}" for m in ("auc", "ndcg@5") for t in S.DEFAULT_TASKS]
# The reference check of every task (here against BM25: this schema marks no relevance score,
# and these hand-made models have no encoder, so no zero-shot reference).
REFERENCE_CHECKS = [("reference", f"{t}/ndcg@5") for t in S.DEFAULT_TASKS]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("scorers")
    for name, transform in MODELS.items():
        save_scorer(
            str(root / name / layout.SAVED_MODEL_DIR), transform, ("lexical_score", "decoy")
        )
    return {name: str(root / name) for name in MODELS}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from conftest import write_raw_dataset

    root = str(tmp_path_factory.mktemp("split") / "examples")
    return write_raw_dataset(root, {"test": ranking_rows(40, 6, seed=0)}, FEATURES)


def evaluate_against(tmp_path, dataset, models, candidate, champion=None, **params):
    model_base = str(tmp_path / "serving")
    os.makedirs(model_base, exist_ok=True)
    if champion is not None:
        install_champion(os.path.join(models[champion], layout.SAVED_MODEL_DIR), model_base)
    run = EvaluateRun(dataset, models[candidate], str(tmp_path / "out"), model_base, **params)
    return run, model_base


def checks_by(verdict: dict) -> dict[tuple[str, str], dict]:
    return {(c["check"], c["metric"]): c for c in verdict["checks"]}


def test_first_run_applies_the_floors_and_the_reference_check(tmp_path, dataset, models):
    run, model_base = evaluate_against(tmp_path, dataset, models, "strong")
    verdict = run.verdict
    assert run.result is True
    assert (verdict["blessed"], verdict["first_run"], verdict["forced"]) == (True, True, False)
    assert verdict["champion_uri"] is None and verdict["paired"] is None
    assert [(c["check"], c["metric"]) for c in verdict["checks"]] == [
        ("floor", k) for k in GATED
    ] + REFERENCE_CHECKS
    candidate = run.json(layout.EVAL_RESULTS_FILE)["candidate"]
    for check in verdict["checks"]:
        if check["check"] == "floor":
            assert check["value"] == pytest.approx(candidate[check["metric"]])
        assert check["outcome"] == "pass"
    assert checks_by(verdict)[("floor", "click/auc")]["threshold"] == 0.6  # the default floor
    assert verdict["reasons"] == [
        "blessed: all 9 checks passed",
        f"no champion in {os.path.join(model_base, 'mlpr')}: first run, only floors and the "
        "reference check apply (no comparison with a champion, no significance test)",
    ]
    assert "none: first run, nothing is served yet" in run.html


def test_better_candidate_displaces_the_champion(tmp_path, dataset, models):
    run, model_base = evaluate_against(tmp_path, dataset, models, "strong", champion="weak")
    verdict, results = run.verdict, run.json(layout.EVAL_RESULTS_FILE)
    assert run.result is True and verdict["blessed"] and not verdict["first_run"]
    assert verdict["champion_uri"] == os.path.join(model_base, "mlpr", "1")
    checks = checks_by(verdict)
    assert len(checks) == 16 and all(c["outcome"] == "pass" for c in checks.values())
    champion_auc = results["champion"]["click/auc"]
    assert checks[("champion", "click/auc")]["threshold"] == pytest.approx(champion_auc)
    assert checks[("champion", "click/auc")]["value"] > champion_auc + 0.4
    # Paired NDCG@5 over the queries with a positive label: 40 for click, 39 atc, 37 purchase.
    paired = verdict["paired"]
    assert [paired[t]["queries"] for t in S.DEFAULT_TASKS] == [40, 39, 37]
    for task in S.DEFAULT_TASKS:
        # Same queries on both sides: the mean difference is the difference of the means.
        gain = results["candidate"][f"{task}/ndcg@5"] - results["champion"][f"{task}/ndcg@5"]
        assert paired[task]["mean_difference"] == pytest.approx(gain)
        assert paired[task]["ci_low"] > 0.2 and paired[task]["p_value"] < 1e-9
    significance = checks[("significance", "purchase/ndcg@5")]
    assert significance["value"] == pytest.approx(paired["purchase"]["ci_low"])
    assert significance["threshold"] == 0.0
    assert "significantly better: the CI's lower bound is above 0" in significance["reason"]
    assert verdict["settings"]["significance"] == "better"


def test_worse_candidate_is_refused_with_every_failed_check(tmp_path, dataset, models):
    run, _ = evaluate_against(tmp_path, dataset, models, "weak", champion="strong")
    verdict, results = run.verdict, run.json(layout.EVAL_RESULTS_FILE)
    assert run.result is False and verdict["blessed"] is False and verdict["forced"] is False
    # The weak model ranks at random: AUC below 0.5 and every metric below the champion's.
    expected = (
        [f"floor:{t}/auc" for t in S.DEFAULT_TASKS]
        + [f"champion:{k}" for k in GATED]
        + ["significance:purchase/ndcg@5"]
    )
    assert verdict["failed_checks"] == expected
    assert verdict["reasons"][0] == "not blessed: 10 of 16 checks failed"
    check = checks_by(verdict)[("champion", "purchase/ndcg@5")]
    assert check["value"] == pytest.approx(results["candidate"]["purchase/ndcg@5"])
    assert check["threshold"] == pytest.approx(results["champion"]["purchase/ndcg@5"])
    assert check["reason"].startswith("purchase/ndcg@5 = 0.5")
    assert verdict["paired"]["purchase"]["ci_high"] < 0


def test_forced_push_is_blessed_recorded_and_pushed(tmp_path, dataset, models):
    run, model_base = evaluate_against(
        tmp_path, dataset, models, "weak", champion="strong", force_push=True
    )
    verdict = run.verdict
    assert run.result is True
    assert (verdict["blessed"], verdict["forced"], verdict["checks_passed"]) == (True, True, False)
    assert len(verdict["failed_checks"]) == 10
    assert verdict["settings"]["force_push"] is True
    assert verdict["reasons"][0].startswith(
        "blessed because force_push is set, although 10 of 16 checks failed: floor click/auc"
    )
    assert run.blessing.metadata["forced"] is True
    from kfp import dsl

    pushed = push.python_func(
        model=run_model(models["weak"]),
        blessing=run.blessing,
        serving_config=dsl.Artifact(uri=os.path.join(str(tmp_path), "push-config")),
        model_base=model_base,
    )
    assert pushed.pushed_uri == os.path.join(model_base, "mlpr", "2")
    assert "BLESSED (FORCED)" in run.html


def run_model(model_dir: str):
    from kfp import dsl

    return dsl.Model(uri=model_dir)


def test_tiny_noisy_gain_does_not_displace_the_champion(tmp_path, dataset, models):
    run, _ = evaluate_against(tmp_path, dataset, models, "strong", champion="jitter")
    verdict = run.verdict
    # Better on every gated metric, but by a hair and not significantly on purchase NDCG@5.
    assert verdict["failed_checks"] == ["significance:purchase/ndcg@5"]
    paired = verdict["paired"]["purchase"]
    assert 0 < paired["mean_difference"] < 0.01 and paired["ci_low"] < 0 < paired["ci_high"]
    assert paired["p_value"] > 0.05
    assert run.result is False
    # The milder rule only blocks a significant loss.
    (tmp_path / "serving" / "mlpr" / "1").rename(tmp_path / "kept")
    milder, _ = evaluate_against(
        tmp_path / "again", dataset, models, "strong", "jitter", champion_significance="not_worse"
    )
    assert milder.result is True and milder.verdict["failed_checks"] == []
    assert checks_by(milder.verdict)[("significance", "purchase/ndcg@5")]["value"] == (
        pytest.approx(paired["ci_high"])
    )


def test_run_evaluation_is_the_step_without_kfp(tmp_path, dataset, models):
    """The plain call behind the component: the verdict, the report and the blessing's files,
    the same as the component's for the same inputs."""
    import json

    from components.evaluate.gate_config import GateConfig
    from components.evaluate.run import run_evaluation

    model_base = str(tmp_path / "serving")
    install_champion(os.path.join(models["strong"], layout.SAVED_MODEL_DIR), model_base)
    config = GateConfig.from_parameters(
        auc_floor=0.6,
        ndcg5_floor=0.0,
        metric_floors={},
        max_drop_vs_champion=0.0,
        max_drop_by_metric={},
    )
    verdict, report = run_evaluation(
        dataset, models["weak"], str(tmp_path / "blessing"), model_base, "mlpr", config
    )
    assert verdict.blessed is False and not verdict.first_run
    assert report.champion_uri is not None and report.champion_metrics is not None
    written = json.loads((tmp_path / "blessing" / layout.BLESSING_FILE).read_text())
    assert written["blessed"] is False and written["checks"] == verdict.to_dict()["checks"]
    component_run, _ = evaluate_against(tmp_path / "kfp", dataset, models, "weak", "strong")
    assert [c["outcome"] for c in component_run.verdict["checks"]] == [
        c["outcome"] for c in written["checks"]
    ]
    assert component_run.verdict["reasons"][0] == written["reasons"][0]
