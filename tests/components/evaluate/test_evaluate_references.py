"""The evaluate step's no-training references on a synthetic split whose engagement follows
lexical_score, a feature the schema marks as a relevance score: the references are scored,
reported and logged, and a candidate that ranks by noise is refused by the reference check."""

import json
import os

import pytest
from evaluate_testlib import DECOY, SIGNAL, EvaluateRun, ranking_rows, save_scorer

from components.evaluate.report import REPORT_FILE
from contract import layout
from contract import schema as S

SCHEMA = S.RawSchema(ranking_features=(S.RankingFeature(SIGNAL.name, relevance_score=True), DECOY))
ZERO_SHOT = "zero-shot all-minilm-l6-v2"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from conftest import write_raw_dataset

    root = str(tmp_path_factory.mktemp("split") / "examples")
    rows = ranking_rows(40, 6, seed=0)
    # A train split too: BM25's corpus is the titles of every split.
    return write_raw_dataset(root, {"train": rows[:60], "test": rows}, SCHEMA)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("scorers")
    made = {}
    for name, transform in {"strong": lambda x, d: x, "noise": lambda x, d: d}.items():
        save_scorer(str(root / name / layout.SAVED_MODEL_DIR), transform, (SIGNAL.name, DECOY.name))
        made[name] = str(root / name)
    # The noise model as the train step would describe a MiniLM-based candidate with a
    # frozen encoder: its zero-shot reference is MiniLM's cosine.
    info = {
        "config": {
            "architecture": "mlpr",
            "encoder_preset": "all-minilm-l6-v2",
            "query_length": 16,
            "product_length": 48,
            "ranker": {"fine_tune_layers": 0},
        }
    }
    with open(os.path.join(made["noise"], layout.TRAIN_INFO_FILE), "w") as f:
        json.dump(info, f)
    return made


def run(tmp_path, dataset, model_dir, name="out", **params):
    model_base = str(tmp_path / "serving")
    os.makedirs(model_base, exist_ok=True)
    return EvaluateRun(dataset, model_dir, str(tmp_path / name), model_base, **params)


def test_references_are_scored_reported_and_logged(tmp_path, dataset, models):
    done = run(tmp_path, dataset, models["strong"])
    assert done.result is True
    references = done.json(layout.EVAL_RESULTS_FILE)["references"]
    # The schema's relevance score, then BM25; no zero-shot (no train_info.json).
    assert list(references) == ["lexical_score", "bm25"]
    candidate = done.json(layout.EVAL_RESULTS_FILE)["candidate"]
    for task in S.DEFAULT_TASKS:
        key = f"{task}/ndcg@5"
        # The candidate ranks by lexical_score: the same NDCG as that reference...
        assert references["lexical_score"][key] == pytest.approx(candidate[key])
        # ...and far above BM25 on these titles ("product <n>", no word of the query).
        assert references["bm25"][key] < candidate[key] - 0.2
        logged = done.metrics.metadata[f"reference_lexical_score_{task}_ndcg_at_5"]
        assert logged == pytest.approx(references["lexical_score"][key])
        assert done.metrics.metadata[f"reference_bm25_{task}_auc"] == pytest.approx(
            references["bm25"][f"{task}/auc"]
        )
        comparison = done.verdict["references"][task]
        assert comparison["reference"] == "lexical_score"
        # Every per-query difference is 0: nothing to test, which does not block.
        assert comparison["paired"]["mean_difference"] == 0.0 and comparison["p_less"] is None
    assert [c["outcome"] for c in done.verdict["checks"] if c["check"] == "reference"] == [
        "pass"
    ] * 3
    report = done.json(REPORT_FILE)
    assert report["reference_metrics"]["bm25"] == references["bm25"]
    assert report["reference_notes"] == ["no zero-shot reference: the model has no train_info.json"]
    assert "No-training references (NDCG@5)" in done.html


def test_a_candidate_below_a_reference_is_refused(tmp_path, dataset, models, capsys):
    # auc_floor 0: the noise model would fail the AUC floor too; here only references gate.
    done = run(tmp_path, dataset, models["noise"], auc_floor=0.0)
    verdict = done.verdict
    assert done.result is False and verdict["first_run"] is True
    assert verdict["failed_checks"] == [f"reference:{t}/ndcg@5" for t in S.DEFAULT_TASKS]
    results = done.json(layout.EVAL_RESULTS_FILE)
    assert list(results["references"]) == ["lexical_score", "bm25", ZERO_SHOT]
    assert results["references"][ZERO_SHOT]["click/ndcg@5"] > 0.0
    for check in (c for c in verdict["checks"] if c["check"] == "reference"):
        task = check["metric"].split("/")[0]
        comparison = verdict["references"][task]
        assert comparison["reference"] == "lexical_score"
        assert check["value"] == pytest.approx(comparison["p_less"]) and check["value"] < 0.05
        paired = comparison["paired"]
        gap = (
            results["candidate"][check["metric"]]
            - results["references"]["lexical_score"][check["metric"]]
        )
        assert paired["mean_difference"] == pytest.approx(gap) and gap < -0.2
        assert check["reason"] == (
            f"{check['metric']} = {results['candidate'][check['metric']]:.4f} is significantly "
            f"below reference lexical_score {comparison['reference_value']:.4f} (paired over "
            f"{paired['queries']} queries: {gap:+.4f}, one-sided p = {check['value']:.4g})"
        )
        assert check["reason"] in verdict["reasons"]
    printed = capsys.readouterr().out
    assert "Verdict: NOT BLESSED" in printed
    assert "is significantly below reference lexical_score" in printed
    assert ZERO_SHOT in printed  # the references' table names every reference
    assert "reference_zero_shot_all_minilm_l6_v2_purchase_ndcg_at_5" in done.metrics.metadata


def test_warn_records_and_blesses_off_scores_nothing(tmp_path, dataset, models):
    warned = run(tmp_path, dataset, models["noise"], "warn", auc_floor=0.0, reference_check="warn")
    assert warned.result is True and warned.verdict["failed_checks"] == []
    assert warned.verdict["warnings"] == [f"reference:{t}/ndcg@5" for t in S.DEFAULT_TASKS]
    assert sum(r.startswith("warning: ") for r in warned.verdict["reasons"]) == 3
    off = run(tmp_path, dataset, models["noise"], "off", auc_floor=0.0, reference_check="off")
    assert off.result is True and off.verdict["references"] is None
    assert {c["check"] for c in off.verdict["checks"]} == {"floor"}
    assert off.json(layout.EVAL_RESULTS_FILE)["references"] == {}
    assert not any(k.startswith("reference_") for k in off.metrics.metadata)
    with pytest.raises(ValueError, match="reference_check must be one of"):
        run(tmp_path, dataset, models["noise"], "bad", reference_check="block")
    assert warned.verdict["settings"]["reference_alpha"] == 0.05
