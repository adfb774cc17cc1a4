import math

import numpy as np
import pytest

from components.evaluate.metrics import NdcgResult, auc, ndcg_at_k


def log2(x: float) -> float:
    return math.log2(x)


class TestNdcg:
    def test_three_items_by_hand(self):
        # Ranked by score: labels come out as [0, 1, 1] at ranks 1, 2, 3.
        dcg = 0 / log2(2) + 1 / log2(3) + 1 / log2(4)
        idcg = 1 / log2(2) + 1 / log2(3) + 0 / log2(4)
        result = ndcg_at_k(["q"] * 3, [0, 1, 1], [0.9, 0.5, 0.1], k=3)
        assert result == NdcgResult(
            mean=pytest.approx(dcg / idcg), queries_used=1, queries_without_positive=0
        )

    def test_input_order_does_not_matter(self):
        shuffled = ndcg_at_k(["q"] * 3, [1, 0, 1], [0.1, 0.9, 0.5], k=3)
        assert shuffled.mean == pytest.approx((1 / log2(3) + 1 / log2(4)) / (1 + 1 / log2(3)))

    def test_cutoff(self):
        # k=1: the top item has label 0, the ideal top has 1 -> 0.
        assert ndcg_at_k(["q"] * 3, [0, 1, 1], [0.9, 0.5, 0.1], k=1).mean == 0.0
        # k=2: DCG@2 = 1/log2(3); IDCG@2 = 1 + 1/log2(3).
        expected = (1 / log2(3)) / (1 + 1 / log2(3))
        assert ndcg_at_k(["q"] * 3, [0, 1, 1], [0.9, 0.5, 0.1], k=2).mean == pytest.approx(expected)
        # k beyond the list length is the full list.
        full = ndcg_at_k(["q"] * 3, [0, 1, 1], [0.9, 0.5, 0.1], k=3).mean
        assert ndcg_at_k(["q"] * 3, [0, 1, 1], [0.9, 0.5, 0.1], k=10).mean == pytest.approx(full)

    def test_ties_are_averaged_over_orderings(self):
        # All three tied: every position holds on average 1/3 of the single positive's gain.
        expected_at_3 = (1 / 3) * (1 / log2(2) + 1 / log2(3) + 1 / log2(4))
        result = ndcg_at_k(["q"] * 3, [1, 0, 0], [0.5, 0.5, 0.5], k=3)
        assert result.mean == pytest.approx(expected_at_3)
        # Cut at 1: the top slot holds the positive in one ordering of three.
        assert ndcg_at_k(["q"] * 3, [1, 0, 0], [0.5, 0.5, 0.5], k=1).mean == pytest.approx(1 / 3)

    def test_query_without_positive_is_excluded_and_counted(self):
        result = ndcg_at_k(["a", "a", "b", "b"], [1, 0, 0, 0], [0.9, 0.1, 0.8, 0.2], k=5)
        assert result == NdcgResult(mean=1.0, queries_used=1, queries_without_positive=1)

    def test_only_queries_without_positive_give_nan(self):
        result = ndcg_at_k(["a", "b"], [0, 0], [0.1, 0.2], k=5)
        assert math.isnan(result.mean)
        assert (result.queries_used, result.queries_without_positive) == (0, 2)

    def test_single_item_query(self):
        assert ndcg_at_k(["a"], [1], [0.3], k=5) == NdcgResult(1.0, 1, 0)
        without = ndcg_at_k(["a"], [0], [0.3], k=5)
        assert math.isnan(without.mean)
        assert (without.queries_used, without.queries_without_positive) == (0, 1)

    def test_mean_over_queries_of_different_lengths(self):
        first = (1 / log2(3) + 1 / log2(4)) / (1 + 1 / log2(3))
        result = ndcg_at_k(
            ["a", "a", "a", "b", "b", "c"],
            [0, 1, 1, 0, 1, 1],
            [0.9, 0.5, 0.1, 0.7, 0.2, 0.4],
            k=3,
        )
        # b: the positive is second -> 1/log2(3); c: single positive -> 1.
        assert result.mean == pytest.approx((first + 1 / log2(3) + 1.0) / 3)
        assert result.queries_used == 3

    def test_graded_labels(self):
        # Gains are the grades themselves: ranked grades [0, 2, 1].
        dcg = 2 / log2(3) + 1 / log2(4)
        idcg = 2 / log2(2) + 1 / log2(3)
        result = ndcg_at_k([7, 7, 7], [0.0, 2.0, 1.0], [0.9, 0.5, 0.1], k=3)
        assert result.mean == pytest.approx(dcg / idcg)

    def test_matches_a_loop_over_queries(self):
        from sklearn.metrics import ndcg_score

        rng = np.random.default_rng(0)
        queries = rng.integers(0, 40, size=400)
        labels = rng.integers(0, 2, size=400)
        scores = rng.random(400).round(1)  # rounding makes ties
        per_query = []
        for q in np.unique(queries):
            rows = queries == q
            if labels[rows].sum() == 0:
                continue
            if rows.sum() == 1:
                per_query.append(1.0)
            else:
                per_query.append(ndcg_score([labels[rows]], [scores[rows]], k=5))
        result = ndcg_at_k(queries, labels, scores, k=5)
        assert result.mean == pytest.approx(np.mean(per_query))
        assert result.queries_used == len(per_query)

    @pytest.mark.parametrize("k", [0, -1, 2.5, True])
    def test_rejects_bad_k(self, k):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            ndcg_at_k(["a"], [1], [0.5], k=k)

    def test_rejects_negative_labels_and_mismatched_lengths(self):
        with pytest.raises(ValueError, match="non-negative"):
            ndcg_at_k(["a", "a"], [-1, 1], [0.5, 0.4], k=2)
        with pytest.raises(ValueError, match="differ in length: 2, 2, 1"):
            ndcg_at_k(["a", "a"], [0, 1], [0.5], k=2)

    def test_rejects_nan_scores(self):
        with pytest.raises(ValueError, match="1 NaN or infinite"):
            ndcg_at_k(["a", "a"], [0, 1], [0.5, float("nan")], k=2)


class TestAuc:
    def test_tiny_known_case(self):
        # Positives scored 0.8 and 0.4, negatives 0.6 and 0.2: pairs won 0.8>0.6, 0.8>0.2,
        # 0.4>0.2; lost 0.4<0.6 -> 3/4.
        assert auc([1, 0, 1, 0], [0.8, 0.6, 0.4, 0.2]) == pytest.approx(3 / 4)

    def test_ties_count_half(self):
        assert auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)

    def test_single_class_is_nan(self):
        assert math.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))
        assert math.isnan(auc([0, 0], [0.1, 0.2]))
        assert math.isnan(auc([], []))

    def test_rejects_non_binary_labels(self):
        with pytest.raises(ValueError, match="0/1 labels"):
            auc([0, 2], [0.1, 0.2])

    def test_rejects_nan_scores(self):
        with pytest.raises(ValueError, match="finite"):
            auc([0, 1], [0.1, float("inf")])


def test_ndcg_matches_scikit_learn_with_ties_and_graded_labels():
    from sklearn.metrics import ndcg_score

    from components.evaluate.metrics import ndcg_at_ks, ndcg_per_query_at

    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 25, size=60)
    queries = np.repeat([f"q{i}" for i in range(sizes.size)], sizes)
    # Coarse scores make many ties; labels are graded 0..3.
    scores = rng.integers(0, 6, size=queries.size) / 5.0
    labels = rng.integers(0, 4, size=queries.size) * (rng.random(queries.size) < 0.4)
    ks = (1, 2, 3, 5, 10, 30)
    per_k = ndcg_per_query_at(queries, labels, scores, ks)
    for k in ks:
        expected = {}
        for q in np.unique(queries):
            rows = queries == q
            if labels[rows].sum() == 0:
                continue
            expected[q] = (
                1.0 if rows.sum() == 1 else ndcg_score(labels[rows][None], scores[rows][None], k=k)
            )
        assert per_k[k].keys() == expected.keys()
        for q, value in expected.items():
            assert per_k[k][q] == pytest.approx(value, abs=1e-12), (k, q)
        assert ndcg_at_ks(queries, labels, scores, ks)[k].mean == pytest.approx(
            np.mean(list(expected.values()))
        )
