"""Scoring, metrics and the evaluate -> push flow, against tiny SavedModels of the contract.

The fixture models implement the `score_examples` signature of the trained model: they parse
the raw examples and return a fixed function of `lexical_score`, so every metric is known.
"""

import glob
import json
import math
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from evaluate_testlib import (
    DECOY,
    FOUR_TASKS,
    SIGNAL,
    EvaluateRun,
    install_champion,
    ranking_rows,
    save_scorer,
)
from kfp import dsl

from components.evaluate.cli import cli
from components.evaluate.component import evaluate
from components.evaluate.run import evaluate_step
from components.evaluate.scoring import compute_metrics, find_champion, score_split
from components.push.component import push
from contract import layout
from contract import schema as S

FEATURES = S.RawSchema(ranking_features=(S.RankingFeature("lexical_score"),))
LOG2_3, LOG2_4 = math.log2(3), math.log2(4)


def row(query: str, pid: str, lexical: float, clicks: int, atc: int, purchases: int) -> dict:
    return {
        S.QUERY: query,
        S.PRODUCT_ID: pid,
        S.TITLE: f"title {pid}",
        "lexical_score": lexical,
        S.IMPRESSIONS: 20,
        S.CLICKS: clicks,
        S.ADD_TO_CART: atc,
        S.PURCHASES: purchases,
    }


# Labels per task (click, atc, purchase) follow from the counts.
ROWS = [
    row("red shoes", "p1", 0.9, 3, 1, 0),
    row("red shoes", "p2", 0.5, 0, 0, 0),
    row("red shoes", "p3", 0.1, 2, 0, 0),
    row("blue hat", "p4", 0.8, 5, 2, 1),
    row("blue hat", "p5", 0.2, 0, 0, 0),
    row("socks", "p6", 0.3, 0, 0, 0),
]
# The good fixture predicts click = x, atc = x/2, purchase = x/4 with x = lexical_score.
# click: positives {0.9, 0.1, 0.8} vs negatives {0.5, 0.2, 0.3}: 0.9 and 0.8 win 3 pairs each,
# 0.1 wins none -> AUC 6/9. NDCG@5: red shoes ranks labels [1, 0, 1] -> (1 + 1/log2(4)) /
# (1 + 1/log2(3)); blue hat ranks [1, 0] -> 1; socks has no positive and is left out.
GOOD_CLICK_AUC = 6 / 9
GOOD_CLICK_NDCG5 = ((1 + 1 / LOG2_4) / (1 + 1 / LOG2_3) + 1.0) / 2
# purchase: the one positive (0.8/4) is below p1 (0.9/4) only -> AUC 4/5; NDCG@5 over blue hat = 1.
GOOD_PURCHASE_AUC = 4 / 5


def good(x):
    return x


def flipped(x):
    return 1.0 - x


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    made = {}
    for name, transform in {"good": good, "flipped": flipped}.items():
        model_dir = root / name
        save_scorer(str(model_dir / layout.SAVED_MODEL_DIR), transform)
        made[name] = str(model_dir)
    return made


@pytest.fixture
def dataset(tmp_path, raw_dataset_writer):
    root = str(tmp_path / "examples")
    raw_dataset_writer(root, {"test": ROWS[:4]}, FEATURES)
    # A second shard, to check every file of the split is read.
    other = str(tmp_path / "other")
    raw_dataset_writer(other, {"test": ROWS[4:]}, FEATURES)
    (shard,) = tf.io.gfile.glob(layout.raw_split_pattern(other, "test"))
    shutil.copy(shard, layout.raw_shard_path(root, "test", 1, 2))
    return root


def saved_model(model_dir: str) -> str:
    return os.path.join(model_dir, layout.SAVED_MODEL_DIR)


def records_of(root: str) -> str:
    return layout.raw_split_pattern(root, "test")


class TestScoreSplit:
    def test_reads_every_shard_and_aligns_outputs(self, dataset, models):
        scored = score_split(
            saved_model(models["good"]), records_of(dataset), S.DEFAULT_TASKS, batch_size=2
        )
        assert scored.tasks == ("click", "atc", "purchase")
        order = np.argsort(scored.product_id)
        assert scored.product_id[order].tolist() == ["p1", "p2", "p3", "p4", "p5", "p6"]
        assert scored.query[order].tolist() == [r[S.QUERY] for r in ROWS]
        assert scored.impressions.tolist() == [20] * 6
        assert scored.labels["click"][order].tolist() == [1, 0, 1, 1, 0, 0]
        assert scored.labels["atc"][order].tolist() == [1, 0, 0, 1, 0, 0]
        assert scored.labels["purchase"][order].tolist() == [0, 0, 0, 1, 0, 0]
        lexical = np.array([r["lexical_score"] for r in ROWS])
        np.testing.assert_allclose(scored.predictions["click"][order], lexical, rtol=1e-6)
        np.testing.assert_allclose(scored.predictions["purchase"][order], lexical / 4, rtol=1e-6)
        np.testing.assert_allclose(scored.score[order], lexical / 4, rtol=1e-6)

    def test_empty_split_gives_undefined_metrics(self, tmp_path, raw_dataset_writer, models):
        root = raw_dataset_writer(str(tmp_path / "empty"), {"test": []}, FEATURES)
        scored = score_split(saved_model(models["good"]), records_of(root), S.DEFAULT_TASKS)
        assert scored.num_examples == 0
        m = compute_metrics(scored)
        assert (m["examples"], m["queries"]) == (0, 0)
        assert math.isnan(m["click/auc"]) and math.isnan(m["purchase/ndcg@5"])

    def test_no_files_is_a_clear_error(self, tmp_path, models):
        pattern = str(tmp_path / "nothing" / "data-*.parquet")
        with pytest.raises(FileNotFoundError, match="no Parquet files of a raw split match"):
            score_split(saved_model(models["good"]), pattern, S.DEFAULT_TASKS)

    def test_missing_signature_is_a_clear_error(self, tmp_path, dataset):
        path = save_scorer(str(tmp_path / "plain"), good, with_signature=False)
        with pytest.raises(ValueError, match="has no 'score_examples' signature"):
            score_split(path, records_of(dataset), S.DEFAULT_TASKS)

    def test_a_task_the_model_lacks_is_a_clear_error(self, dataset, models):
        tasks = ("click", "favorite", "atc", "purchase")
        message = (
            "has no output for ['favorite']: its score_examples outputs are ['atc', 'click', "
            "'purchase', 'score'], the schema's tasks ['click', 'favorite', 'atc', 'purchase']"
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            score_split(saved_model(models["good"]), records_of(dataset), tasks)

    @pytest.mark.parametrize("tasks", [(), ("click", "click"), ("click", "score")])
    def test_the_tasks_must_be_distinct_names(self, dataset, models, tasks):
        with pytest.raises(ValueError, match="needs one or more distinct task names"):
            score_split(saved_model(models["good"]), records_of(dataset), tasks)

    def test_a_subset_of_the_models_outputs(self, dataset, models):
        scored = score_split(saved_model(models["good"]), records_of(dataset), ("click",))
        assert scored.tasks == ("click",) and set(scored.predictions) == {"click"}
        assert compute_metrics(scored)["click/auc"] == pytest.approx(GOOD_CLICK_AUC)

    def test_not_a_saved_model(self, tmp_path, dataset):
        with pytest.raises(FileNotFoundError, match="saved_model.pb is missing"):
            score_split(str(tmp_path), records_of(dataset), S.DEFAULT_TASKS)


class TestComputeMetrics:
    def test_known_values(self, dataset, models):
        scored = score_split(saved_model(models["good"]), records_of(dataset), S.DEFAULT_TASKS)
        m = compute_metrics(scored)
        assert m["examples"] == 6 and m["queries"] == 3
        assert m["click/auc"] == pytest.approx(GOOD_CLICK_AUC)
        assert m["click/ndcg@5"] == pytest.approx(GOOD_CLICK_NDCG5)
        assert m["click/ndcg@1"] == pytest.approx(1.0)
        assert m["click/queries_without_positive"] == 1
        assert m["atc/auc"] == pytest.approx(1.0)
        assert m["purchase/auc"] == pytest.approx(GOOD_PURCHASE_AUC)
        assert m["purchase/ndcg@10"] == pytest.approx(1.0)
        assert m["purchase/queries_without_positive"] == 2
        assert m["purchase/positives"] == 1
        expected = {"examples", "queries"} | {
            f"{t}/{name}"
            for t in S.DEFAULT_TASKS
            for name in (
                "auc",
                "ndcg@1",
                "ndcg@5",
                "ndcg@10",
                "positives",
                "queries_without_positive",
                "nonfinite_predictions",
            )
        }
        assert set(m) == expected

    def test_nonfinite_predictions_make_the_task_undefined(self, dataset, models):
        scored = score_split(saved_model(models["good"]), records_of(dataset), S.DEFAULT_TASKS)
        broken = dict(scored.predictions)
        broken["atc"] = broken["atc"].copy()
        broken["atc"][0] = np.nan
        m = compute_metrics(
            type(scored)(
                query=scored.query,
                product_id=scored.product_id,
                impressions=scored.impressions,
                labels=scored.labels,
                predictions=broken,
                score=scored.score,
            ),
            ks=(5,),
        )
        assert m["atc/nonfinite_predictions"] == 1
        assert math.isnan(m["atc/auc"]) and math.isnan(m["atc/ndcg@5"])
        assert m["atc/queries_without_positive"] == 1
        assert m["click/auc"] == pytest.approx(GOOD_CLICK_AUC)


class TestFindChampion:
    def test_highest_numeric_version_with_a_saved_model(self, tmp_path):
        root = tmp_path / "mlpr"
        for name in ("1", "2", "10", "11", "latest", ".tmp-abc"):
            (root / name).mkdir(parents=True)
        for name in ("1", "2", "10", "latest", ".tmp-abc"):
            (root / name / "saved_model.pb").write_bytes(b"")
        # 11 has no saved_model.pb; non-numeric entries are ignored; 10 > 2 numerically.
        assert find_champion(str(tmp_path), "mlpr") == str(root / "10")

    def test_none_without_versions(self, tmp_path):
        assert find_champion(str(tmp_path), "mlpr") is None
        (tmp_path / "mlpr" / "junk").mkdir(parents=True)
        assert find_champion(str(tmp_path), "mlpr") is None

    def test_object_store_is_rejected(self):
        with pytest.raises(ValueError, match="object stores are not supported"):
            find_champion("gs://bucket/models", "mlpr")


def run_push(model_dir: str, blessing: dsl.Artifact, model_base: str):
    return push.python_func(
        model=dsl.Model(uri=model_dir),
        blessing=dsl.Artifact(uri=blessing.uri),
        serving_config=dsl.Artifact(uri=os.path.join(os.path.dirname(model_base), "push-config")),
        model_base=model_base,
    )


def test_evaluate_then_push_flow(tmp_path, dataset, models):
    model_base = str(tmp_path / "serving")

    # First run: no champion, floors only; the good model clears them and is pushed as 1.
    run = EvaluateRun(dataset, models["good"], str(tmp_path / "r1"), model_base)
    assert run.result is True
    assert run.blessing.metadata["blessed"] is True
    assert run.metrics.metadata["click_auc"] == pytest.approx(GOOD_CLICK_AUC)
    assert run.metrics.metadata["click_ndcg_at_5"] == pytest.approx(GOOD_CLICK_NDCG5)
    assert run.metrics.metadata["purchase_queries_without_positive"] == 2
    assert (
        f"no champion in {os.path.join(model_base, 'mlpr')}: first run, only floors and the "
        "reference check apply (no comparison with a champion, no significance test)"
        in run.verdict["reasons"]
    )
    results = run.json(layout.EVAL_RESULTS_FILE)
    assert results["champion"] is None
    assert results["candidate"]["click/auc"] == pytest.approx(GOOD_CLICK_AUC)
    pushed = run_push(models["good"], run.blessing, model_base)
    assert (pushed.pushed, pushed.pushed_uri) == (True, os.path.join(model_base, "mlpr", "1"))

    # The flipped model ranks backwards: below the AUC floor and below the champion. Refused.
    run = EvaluateRun(dataset, models["flipped"], str(tmp_path / "r2"), model_base)
    assert run.result is False
    failed = {(c["check"], c["metric"]) for c in run.verdict["checks"] if not c["passed"]}
    assert ("floor", "click/auc") in failed and ("champion", "click/auc") in failed
    results = run.json(layout.EVAL_RESULTS_FILE)
    assert results["champion_uri"] == os.path.join(model_base, "mlpr", "1")
    assert results["champion"]["click/auc"] == pytest.approx(GOOD_CLICK_AUC)
    refused = run_push(models["flipped"], run.blessing, model_base)
    assert (refused.pushed, refused.pushed_uri) == (False, "")
    assert refused.reason.startswith("refused: the model is not blessed")
    assert sorted(os.listdir(os.path.join(model_base, "mlpr"))) == ["1"]

    # The same model again is no better: by default it does not displace the champion...
    run = EvaluateRun(dataset, models["good"], str(tmp_path / "r3"), model_base)
    assert run.result is False
    assert [c["metric"] for c in run.verdict["checks"] if not c["passed"]] == ["purchase/ndcg@5"]
    # ...but it is not significantly worse either, which is all "not_worse" asks: version 2.
    run = EvaluateRun(
        dataset,
        models["good"],
        str(tmp_path / "r4"),
        model_base,
        champion_significance="not_worse",
    )
    assert run.result is True
    pushed = run_push(models["good"], run.blessing, model_base)
    assert pushed.pushed_uri == os.path.join(model_base, "mlpr", "2")
    served = tf.saved_model.load(pushed.pushed_uri)
    assert "score_examples" in served.signatures


# The gate parameters as the pipeline defaults them.
GATE = dict(
    auc_floor=0.6,
    ndcg5_floor=0.0,
    metric_floors={},
    max_drop_vs_champion=0.0,
    max_drop_by_metric={},
    champion_significance="better",
    significance_task="",
    significance_confidence=0.95,
    force_push=False,
)


def test_evaluate_step_fills_every_output(tmp_path, dataset, models, capsys):
    out = tmp_path / "out"
    metrics = dsl.Metrics(uri=str(out / "metrics"))
    classification = [dsl.ClassificationMetrics(uri=str(out / f"slot{k}")) for k in range(4)]
    blessing = {"given": "kept"}
    report = out / "evaluate" / "report.html"  # its directory does not exist yet
    blessed = evaluate_step(
        dataset,
        models["flipped"],
        str(tmp_path / "serving"),
        "mlpr",
        metrics,
        classification,
        str(report),
        str(out / "blessing"),
        blessing,
        **(GATE | {"force_push": True}),
    )
    # The flipped model fails the AUC floors; force_push blesses it and says so.
    assert blessed is True
    assert blessing.keys() == {"given", "blessed", "forced", "reasons", "champion_uri"}
    assert (blessing["blessed"], blessing["forced"], blessing["champion_uri"]) == (True, True, "")
    verdict = json.loads((out / "blessing" / layout.BLESSING_FILE).read_text())
    assert blessing["reasons"] == verdict["reasons"]
    assert verdict["reasons"][0].startswith("blessed because force_push is set")
    assert sorted(os.listdir(out / "blessing")) == sorted(
        [layout.BLESSING_FILE, layout.EVAL_RESULTS_FILE, "report.json"]
    )
    assert metrics.metadata["click_auc"] == pytest.approx(1 - GOOD_CLICK_AUC)
    for slot, task in zip(classification, S.DEFAULT_TASKS, strict=False):
        assert slot.metadata["task"] == task
        assert slot.metadata["confusionMatrix"]["annotationSpecs"] == [
            {"displayName": f"no {task}"},
            {"displayName": task},
        ]
    assert classification[3].metadata == {
        "unused": "the funnel has only 3 task(s) (click, atc, purchase): no task 4"
    }
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "Verdict: BLESSED (FORCED)" in capsys.readouterr().out


@pytest.fixture
def local_runner(tmp_path):
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    yield
    # Leave no local-execution config (pointing into this test's tmp_path) to later tests.
    local.config.LocalExecutionConfig.instance = None


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_runs_in_the_kfp_executor(tmp_path, dataset, models, local_runner):
    """Both components through kfp.local: real executor, artifacts and NamedTuple outputs."""
    model_base = str(tmp_path / "serving")

    @dsl.pipeline(name="evaluate-push")
    def pipeline(model_base: str):
        examples = dsl.importer(artifact_uri=dataset, artifact_class=dsl.Dataset)
        model = dsl.importer(artifact_uri=models["good"], artifact_class=dsl.Model)
        evaluated = evaluate(examples=examples.output, model=model.output, model_base=model_base)
        # No dsl.If here: kfp.local 2.17 cannot resolve a condition on a named output of a
        # NamedTuple (it skips the branch); the pusher checks the blessing itself.
        push(model=model.output, blessing=evaluated.outputs["blessing"], model_base=model_base)

    pipeline(model_base=model_base)
    assert os.listdir(os.path.join(model_base, "mlpr")) == ["1"]
    assert tf.saved_model.load(os.path.join(model_base, "mlpr", "1")).signatures["score_examples"]

    # kfp.local's layout: <pipeline root>/<run>/<task>/<output>, and the executor's record of
    # every output's metadata; the visual artifacts are there as the Kubeflow UI reads them.
    (run_dir,) = glob.glob(str(tmp_path / "root" / "evaluate-push-*"))
    with open(os.path.join(run_dir, "evaluate", "executor_output.json"), encoding="utf-8") as f:
        outputs = json.load(f)["artifacts"]
    click = outputs["task_1_classification"]["artifacts"][0]["metadata"]
    assert click["task"] == "click"
    unused = outputs["task_4_classification"]["artifacts"][0]["metadata"]
    assert unused["unused"].startswith("the funnel has only 3 task(s)")
    assert click["confusionMatrix"]["annotationSpecs"] == [
        {"displayName": "no click"},
        {"displayName": "click"},
    ]
    rows = [r["row"] for r in click["confusionMatrix"]["rows"]]
    assert sum(map(sum, rows)) == len(ROWS) and rows[1][0] + rows[1][1] == 3  # 3 clicked pairs
    assert click["confidenceMetrics"][0] == {
        "confidenceThreshold": pytest.approx(1.9, abs=1e-6),  # the highest score (0.9) + 1
        "recall": 0.0,
        "falsePositiveRate": 0.0,
    }
    assert outputs["metrics"]["artifacts"][0]["metadata"]["click_auc"] == pytest.approx(
        GOOD_CLICK_AUC
    )
    report = os.path.join(run_dir, "evaluate", "report")
    with open(report, encoding="utf-8") as f:
        assert f.read().startswith("<!DOCTYPE html>")

    # The report command finds the run from the pipeline root and prints the same report.
    printed = CliRunner().invoke(cli, ["report", str(tmp_path / "root")])
    assert printed.exit_code == 0, printed.output
    assert "Verdict: BLESSED" in printed.output
    lines = [line.split() for line in printed.output.splitlines()]
    assert ["click", "auc", f"{GOOD_CLICK_AUC:.4f}"] in lines


# Funnels other than the default: the tasks are the schema's (examples_dir/schema.json).
FUNNELS = {
    "four": FOUR_TASKS,
    "one": (S.Task("click", S.CLICKS),),
    "five": (*FOUR_TASKS, S.Task("repeat", "repeat_purchases")),
}


@pytest.fixture(scope="module")
def funnels(tmp_path_factory):
    """Per funnel: a test split of its schema and a model with one output per task."""
    from conftest import write_raw_dataset

    rows = ranking_rows(20, 5, seed=3)
    for r in rows:
        r["repeat_purchases"] = r[S.PURCHASES] * int(r[SIGNAL.name] > 0.8)
    made = {}
    for name, tasks in FUNNELS.items():
        root = tmp_path_factory.mktemp(name)
        schema = S.RawSchema(ranking_features=(SIGNAL, DECOY), tasks=tasks)
        dataset = write_raw_dataset(str(root / "examples"), {"test": rows}, schema)
        model = root / "model"
        names = tuple(t.name for t in tasks)
        features = (SIGNAL.name, DECOY.name)
        save_scorer(str(model / layout.SAVED_MODEL_DIR), lambda x, d: x, features, tasks=names)
        made[name] = (dataset, str(model))
    return made


def test_a_four_task_funnel_is_evaluated_task_by_task(tmp_path, funnels):
    dataset, model = funnels["four"]
    model_base = str(tmp_path / "serving")
    run = EvaluateRun(dataset, model, str(tmp_path / "first"), model_base)
    assert run.result is True
    names = [t.name for t in FOUR_TASKS]
    assert [(c["check"], c["metric"]) for c in run.verdict["checks"]] == [
        ("floor", f"{t}/{m}") for m in ("auc", "ndcg@5") for t in names
    ] + [("reference", f"{t}/ndcg@5") for t in names]
    results = run.json(layout.EVAL_RESULTS_FILE)["candidate"]
    for task in names:
        assert 0.5 < results[f"{task}/auc"] <= 1.0
        assert run.metrics.metadata[f"{task}_auc"] == pytest.approx(results[f"{task}/auc"])
    assert [slot.metadata["task"] for slot in run.classification] == names
    assert all("confusionMatrix" in slot.metadata for slot in run.classification)
    assert '<td class="text">favorite</td>' in run.html

    # Against itself as the champion: the paired test covers every task and the significance
    # check reads the funnel's last task by default.
    install_champion(os.path.join(model, layout.SAVED_MODEL_DIR), model_base)
    again = EvaluateRun(
        dataset, model, str(tmp_path / "again"), model_base, champion_significance="not_worse"
    )
    assert again.result is True
    assert list(again.verdict["paired"]) == names
    assert again.verdict["settings"]["significance_metric"] == "purchase/ndcg@5"
    assert again.verdict["checks"][-1]["metric"] == "purchase/ndcg@5"


def test_a_one_task_funnel(tmp_path, funnels):
    dataset, model = funnels["one"]
    model_base = str(tmp_path / "serving")
    install_champion(os.path.join(model, layout.SAVED_MODEL_DIR), model_base)
    run = EvaluateRun(
        dataset, model, str(tmp_path / "out"), model_base, champion_significance="off"
    )
    assert run.result is True
    assert {c["metric"] for c in run.verdict["checks"]} == {"click/auc", "click/ndcg@5"}
    assert run.classification[0].metadata["task"] == "click"
    for k, slot in enumerate(run.classification[1:], start=2):
        assert slot.metadata == {"unused": f"the funnel has only 1 task(s) (click): no task {k}"}
    assert "click" in run.html and "purchase" not in run.html


def test_a_funnel_longer_than_the_slots_names_the_tasks_left_out(tmp_path, funnels):
    dataset, model = funnels["five"]
    run = EvaluateRun(dataset, model, str(tmp_path / "out"), str(tmp_path / "serving"))
    assert [slot.metadata["task"] for slot in run.classification] == [
        "click",
        "favorite",
        "atc",
        "purchase",
    ]
    assert run.classification[-1].metadata["left_out"] == ["repeat"]
    assert "repeat_auc" in run.metrics.metadata
    assert '<td class="text">repeat</td>' in run.html


def test_a_gate_key_naming_a_task_not_in_the_schema_is_refused(tmp_path, funnels):
    dataset, model = funnels["four"]
    message = (
        "unknown task 'view' in floors key 'view/auc': the schema's tasks are "
        "['click', 'favorite', 'atc', 'purchase']"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        EvaluateRun(
            dataset,
            model,
            str(tmp_path / "out"),
            str(tmp_path / "m"),
            metric_floors={"view/auc": 0.5},
        )
    with pytest.raises(ValueError, match="significance_task must be one of the schema's tasks"):
        EvaluateRun(
            dataset, model, str(tmp_path / "out2"), str(tmp_path / "m"), significance_task="order"
        )


def test_a_model_without_an_output_for_a_schema_task_is_refused(tmp_path, funnels, models):
    dataset, _ = funnels["four"]
    with pytest.raises(ValueError, match=re.escape("has no output for ['favorite']")):
        EvaluateRun(dataset, models["good"], str(tmp_path / "out"), str(tmp_path / "m"))


def test_a_champion_of_another_funnel_is_not_compared_with(tmp_path, funnels):
    """The funnel gained a stage: the model in production has no output for it, so the
    candidate is gated as a first run of the new funnel, and the verdict says why."""
    dataset, model = funnels["four"]
    _, click_only = funnels["one"]  # a model with a click output only
    model_base = str(tmp_path / "serving")
    champion = install_champion(os.path.join(click_only, layout.SAVED_MODEL_DIR), model_base)
    run = EvaluateRun(dataset, model, str(tmp_path / "out"), model_base)
    assert run.result is True
    assert run.verdict["first_run"] is True and run.verdict["champion_uri"] is None
    assert run.verdict["paired"] is None
    reason = (
        f"the champion {champion} has no output for ['favorite', 'atc', 'purchase']: a model of "
        "another funnel (the schema's tasks are ['click', 'favorite', 'atc', 'purchase']), so "
        "first run, only floors and the reference check apply"
    )
    assert any(reason in r for r in run.verdict["reasons"]), run.verdict["reasons"]
    assert run.json(layout.EVAL_RESULTS_FILE)["champion"] is None
