import dataclasses
import json
import math

import numpy as np
import pytest
from evaluate_testlib import FOUR_TASKS, ranking_rows, scored_split
from sklearn.metrics import roc_auc_score

from components.evaluate.analysis import (
    PER_IMPRESSION,
    ModelAnalysis,
    analyse,
    best_f1_threshold,
    calibration_bins,
    calibration_metrics,
    confusion_at,
    expected_calibration_error,
    impression_bounds,
    impression_group_of,
    impression_groups,
    roc_points,
)
from components.evaluate.metrics import ndcg_at_k
from components.evaluate.stats import paired_comparison


class TestRoc:
    def test_small_curve_by_hand(self):
        roc = roc_points(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        # Lowering the threshold: 0.8 (a positive), 0.4 (a negative), 0.35 (a positive), 0.1.
        assert roc.fpr == (0.0, 0.0, 0.5, 0.5, 1.0)
        assert roc.tpr == (0.0, 0.5, 0.5, 1.0, 1.0)
        assert roc.thresholds == pytest.approx((1.8, 0.8, 0.4, 0.35, 0.1))

    def test_thinned_to_at_most_101_monotone_points(self):
        rng = np.random.default_rng(0)
        labels = rng.random(5000) < 0.3
        scores = labels * 0.3 + rng.random(5000)
        roc = roc_points(labels, scores)
        assert len(roc.fpr) == len(roc.tpr) == len(roc.thresholds) <= 101
        assert (roc.fpr[0], roc.tpr[0], roc.fpr[-1], roc.tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
        assert np.all(np.diff(roc.fpr) >= 0) and np.all(np.diff(roc.tpr) >= 0)
        assert np.all(np.diff(roc.thresholds) < 0)
        # The thinned curve keeps the area: trapezoids against the exact AUC.
        area = float(np.sum(np.diff(roc.fpr) * (np.array(roc.tpr[1:]) + roc.tpr[:-1]) / 2))
        assert area == pytest.approx(roc_auc_score(labels, scores), abs=0.005)

    def test_single_class_has_no_curve(self):
        assert roc_points(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4])) is None


class TestConfusion:
    def test_best_f1_threshold_by_hand(self):
        labels = np.array([1, 0, 1, 0, 0])
        scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
        # Top 1: F1 2/3; top 2: 1/2; top 3: 2*2/(3+2) = 0.8; top 4: 2/3; top 5: 4/7.
        assert best_f1_threshold(labels, scores) == 0.7
        confusion = confusion_at(labels, scores, 0.7, "rule")
        assert confusion.matrix == ((2, 1), (0, 2))
        assert confusion.total == 5

    def test_ties_move_together(self):
        # The two tied scores are predicted positive together or not at all.
        assert best_f1_threshold(np.array([1, 0, 0]), np.array([0.5, 0.5, 0.2])) == 0.5

    def test_no_positive_uses_one_half(self):
        assert best_f1_threshold(np.zeros(3), np.array([0.1, 0.9, 0.4])) == 0.5


def test_calibration_deciles():
    scores = np.arange(20) / 20.0
    labels = np.array([0, 0] * 5 + [0, 1] * 5)
    bins = calibration_bins(labels, scores)
    assert [b.pairs for b in bins] == [2] * 10
    assert bins[0].mean_predicted == pytest.approx(0.025) and bins[0].observed_rate == 0.0
    assert bins[9].lowest == 0.9 and bins[9].highest == 0.95 and bins[9].observed_rate == 0.5
    assert [b.pairs for b in calibration_bins(labels[:4], scores[:4])] == [1, 1, 1, 1]


def test_calibration_against_the_count_per_impression():
    """A model trained on rates predicts engagements per impression: each bin weighs its
    pairs by impressions, and a model that predicts every pair's true rate has ECE 0, though
    against the "engaged at least once" label it looks far off."""
    rng = np.random.default_rng(3)
    impressions = rng.integers(5, 200, size=400)
    rate = rng.uniform(0.01, 0.4, size=400)
    counts = np.round(rate * impressions).astype(np.int64)
    exact = counts / impressions  # the observed rate itself as the prediction
    labels = (counts > 0).astype(np.int64)
    bins = calibration_bins(labels, exact, counts=counts, impressions=impressions)
    assert sum(b.impressions for b in bins) == impressions.sum()
    assert expected_calibration_error(bins) == pytest.approx(0.0, abs=1e-12)
    # By hand for the lowest bin: engagements over impressions, and the weighted mean.
    first = np.argsort(exact, kind="stable")[:40]
    assert bins[0].observed_rate == pytest.approx(counts[first].sum() / impressions[first].sum())
    assert bins[0].mean_predicted == pytest.approx(
        np.sum(exact[first] * impressions[first]) / impressions[first].sum()
    )
    # Against the 0/1 label (what the report drew before), the same model is off by far.
    assert expected_calibration_error(calibration_bins(labels, exact)) > 0.5
    # A count above its impressions counts as one engagement per impression (the capped rate).
    capped = calibration_bins(
        np.ones(2), np.array([0.5, 0.5]), 1, np.array([9, 1]), np.array([3, 1])
    )
    assert capped[0].observed_rate == pytest.approx(1.0)
    # Halving every prediction: observed/predicted 2, ECE the impression-weighted mean gap.
    scored = scored_split(ranking_rows(8, 5, seed=4), lambda x, d: x)
    n = scored.num_examples
    scored = dataclasses.replace(
        scored,
        impressions=impressions[:n],
        counts={t: counts[:n] for t in scored.tasks},
        predictions={t: exact[:n] / 2 for t in scored.tasks},
    )
    metrics = calibration_metrics(scored, per_impression=True)
    observed = counts[:n].sum()
    assert metrics["click/observed_to_predicted"] == pytest.approx(
        observed / np.sum(exact[:n] / 2 * impressions[:n])
    )
    assert metrics["click/observed_to_predicted"] == pytest.approx(2.0)
    assert metrics["click/ece"] == pytest.approx(observed / impressions[:n].sum() / 2)
    assert analyse(scored).tasks["click"].calibration_target == PER_IMPRESSION
    binary = calibration_metrics(scored, per_impression=False)
    assert binary["click/observed_to_predicted"] == pytest.approx(
        np.count_nonzero(scored.labels["click"]) / np.sum(exact[:n] / 2)
    )


def test_impression_groups_by_percentile():
    impressions = np.array([6, 10, 10, 20, 30, 40, 50, 100])
    # numpy's linear percentiles: p25 = 10, p75 = 40 + 0.25 * 10 = 42.5.
    assert impression_bounds(impressions) == (10.0, 42.5)
    groups = impression_group_of(impressions, (10.0, 42.5))
    assert groups.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]


def test_group_metrics_are_the_metrics_of_the_group():
    rows = ranking_rows(30, 6, seed=1)
    scored = scored_split(rows, lambda x, d: x)
    groups = impression_groups(scored)
    assert [g.name for g in groups] == ["0-25%", "25-75%", "75-100%"]
    assert sum(g.pairs for g in groups) == 180
    low, high = impression_bounds(scored.impressions)
    middle = (scored.impressions > low) & (scored.impressions <= high)
    assert groups[1].pairs == int(middle.sum())
    assert groups[1].lowest == scored.impressions[middle].min()
    labels, scores = scored.labels["purchase"][middle], scored.predictions["purchase"][middle]
    assert groups[1].metrics["purchase/auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert groups[1].metrics["click/ndcg@5"] == pytest.approx(
        ndcg_at_k(scored.query[middle], scored.labels["click"][middle], scores, 5).mean
    )


def test_analysis_round_trips_through_json():
    scored = scored_split(ranking_rows(12, 5, seed=2), lambda x, d: 0.7 * x + 0.3 * d)
    analysis = analyse(scored)
    click = analysis.tasks["click"]
    assert click.confusion.total == 60
    assert len(click.ndcg_curve) == 10 and len(click.calibration) == 10
    assert click.ndcg_curve[4] == pytest.approx(
        ndcg_at_k(scored.query, scored.labels["click"], scored.predictions["click"], 5).mean
    )
    data = json.loads(json.dumps(analysis.to_dict(), allow_nan=False))
    assert ModelAnalysis.from_dict(data).to_dict() == analysis.to_dict()


def test_non_finite_predictions_leave_the_task_undefined():
    scored = scored_split(ranking_rows(5, 4, seed=3), lambda x, d: x)
    scored.predictions["atc"][0] = math.nan
    analysis = analyse(scored)
    assert analysis.tasks["atc"].roc is None and analysis.tasks["atc"].confusion is None
    assert all(math.isnan(v) for v in analysis.tasks["atc"].ndcg_curve)
    assert analysis.tasks["click"].roc is not None
    json.dumps(analysis.to_dict(), allow_nan=False)


def test_paired_ndcg_pairs_the_same_queries():
    from components.evaluate.analysis import paired_ndcg
    from components.evaluate.metrics import ndcg_per_query

    rows = ranking_rows(20, 6, seed=4)
    strong, weak = scored_split(rows, lambda x, d: x), scored_split(rows, lambda x, d: d)
    paired = paired_ndcg(strong, weak, confidence=0.9)
    task = "atc"
    expected = paired_comparison(
        ndcg_per_query(strong.query, strong.labels[task], strong.predictions[task], 5),
        ndcg_per_query(weak.query, weak.labels[task], weak.predictions[task], 5),
        confidence=0.9,
    )
    assert paired[task] == expected and paired[task].confidence == 0.9
    weak.predictions["click"][3] = math.inf
    assert paired_ndcg(strong, weak, 0.95)["click"] is None


def test_market_groups_are_the_metrics_of_each_market():
    scored = scored_split(ranking_rows(30, 6, seed=1), lambda x, d: x)
    assert analyse(scored).market_groups == ()  # no markets: no groups
    queries = sorted(set(scored.query))
    market_of = {q: ("de" if i % 3 == 0 else "us") for i, q in enumerate(queries)}
    scored = dataclasses.replace(scored, market=np.array([market_of[q] for q in scored.query]))
    groups = analyse(scored).market_groups
    assert [g.name for g in groups] == ["de", "us"]
    assert [g.queries for g in groups] == [10, 20] and sum(g.pairs for g in groups) == 180
    de = scored.market == "de"
    labels, scores = scored.labels["atc"][de], scored.predictions["atc"][de]
    assert groups[0].metrics["atc/auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert groups[0].metrics["atc/ndcg@5"] == pytest.approx(
        ndcg_at_k(scored.query[de], labels, scores, 5).mean
    )
    data = json.loads(json.dumps(analyse(scored).to_dict(), allow_nan=False))
    assert ModelAnalysis.from_dict(data).market_groups == groups


def test_every_task_of_a_four_task_split_is_analysed():
    from components.evaluate.analysis import paired_ndcg
    from components.evaluate.scoring import compute_metrics

    rows = ranking_rows(20, 6, seed=4)
    strong = scored_split(rows, lambda x, d: x, FOUR_TASKS)
    names = ("click", "favorite", "atc", "purchase")
    assert strong.tasks == names
    metrics = compute_metrics(strong)
    favorite = strong.labels["favorite"]
    assert metrics["favorite/positives"] == int(favorite.sum()) > metrics["atc/positives"]
    assert metrics["favorite/auc"] == pytest.approx(
        roc_auc_score(favorite, strong.predictions["favorite"])
    )
    analysis = analyse(strong)
    assert tuple(analysis.tasks) == names
    assert set(analysis.impression_groups[0].metrics) == {
        f"{t}/{m}" for t in names for m in ("auc", "ndcg@5")
    }
    weak = scored_split(rows, lambda x, d: d, FOUR_TASKS)
    assert tuple(paired_ndcg(strong, weak, 0.95)) == names
    data = json.loads(json.dumps(analysis.to_dict(), allow_nan=False))
    assert tuple(ModelAnalysis.from_dict(data).tasks) == names


def test_a_one_task_split():
    from components.evaluate.analysis import paired_ndcg
    from components.evaluate.scoring import compute_metrics

    rows = ranking_rows(10, 5, seed=6)
    one = scored_split(rows, lambda x, d: x, FOUR_TASKS[:1])
    assert one.tasks == ("click",)
    per_task = ("auc", "ndcg@5", "positives", "queries_without_positive", "nonfinite_predictions")
    metrics = compute_metrics(one, ks=(5,))
    assert set(metrics) == {"examples", "queries"} | {f"click/{m}" for m in per_task}
    assert tuple(analyse(one).tasks) == ("click",)
    assert tuple(paired_ndcg(one, one, 0.95)) == ("click",)


def test_the_paired_test_needs_the_same_tasks():
    from components.evaluate.analysis import paired_ndcg

    rows = ranking_rows(5, 4, seed=3)
    with pytest.raises(ValueError, match="the candidate's tasks .* and the champion's .* differ"):
        paired_ndcg(
            scored_split(rows, lambda x, d: x, FOUR_TASKS), scored_split(rows, lambda x, d: x), 0.95
        )


def test_a_scored_split_needs_the_same_tasks_for_labels_and_predictions():
    scored = scored_split(ranking_rows(3, 3, seed=1), lambda x, d: x)
    with pytest.raises(ValueError, match="labels and predictions for the same tasks"):
        dataclasses.replace(scored, predictions={"click": scored.predictions["click"]})
    with pytest.raises(ValueError, match="at least one"):
        dataclasses.replace(scored, labels={}, predictions={})
