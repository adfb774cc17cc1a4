import math

import numpy as np
import pytest

from components.evaluate.metrics import ndcg_at_k, ndcg_per_query
from components.evaluate.stats import paired_comparison


def test_paired_t_test_by_hand():
    # Differences 1, 2, 3: mean 2, sd 1, standard error 1/sqrt(3), t = 2 sqrt(3), 2 d.o.f.
    a = {"q1": 1.0, "q2": 2.0, "q3": 3.0, "only_a": 9.0}
    b = {"q1": 0.0, "q2": 0.0, "q3": 0.0, "only_b": 9.0}
    result = paired_comparison(a, b)
    assert result.queries == 3
    assert result.mean_difference == pytest.approx(2.0)
    # Two-sided p for t = 3.4641 with 2 d.o.f.: 1 - t / sqrt(t^2 + 2) (closed form for 2 d.o.f.)
    t = 2 * math.sqrt(3)
    assert result.p_value == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)
    # t_{0.975, 2} = 4.302653: 2 +- 4.302653 / sqrt(3)
    half = 4.302653 / math.sqrt(3)
    assert result.ci_low == pytest.approx(2 - half, rel=1e-5)
    assert result.ci_high == pytest.approx(2 + half, rel=1e-5)


def test_degenerate_cases():
    same = paired_comparison({"q": 0.5, "r": 0.7}, {"q": 0.4, "r": 0.6})
    assert same.mean_difference == pytest.approx(0.1) and math.isnan(same.p_value)
    empty = paired_comparison({"q": 1.0}, {"r": 1.0})
    assert empty.queries == 0 and empty.to_dict()["p_value"] is None
    with pytest.raises(ValueError, match="confidence"):
        paired_comparison({}, {}, confidence=1.5)


def test_a_real_gain_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    base = {f"q{i}": rng.uniform(0.3, 0.7) for i in range(400)}
    better = {q: v + 0.05 + rng.normal(0, 0.05) for q, v in base.items()}
    noisy = {q: v + rng.normal(0, 0.05) for q, v in base.items()}
    assert paired_comparison(better, base).p_value < 1e-6
    assert paired_comparison(better, base).ci_low > 0
    assert paired_comparison(noisy, base).ci_low < 0 < paired_comparison(noisy, base).ci_high


def test_per_query_ndcg_averages_to_ndcg_at_k():
    queries = ["a", "a", "a", "b", "b", "c", "c"]
    labels = [0, 1, 1, 1, 0, 0, 0]
    scores = [0.9, 0.5, 0.1, 0.2, 0.3, 0.5, 0.4]
    per_query = ndcg_per_query(queries, labels, scores, k=3)
    assert set(per_query) == {"a", "b"}  # "c" has no positive
    # a: DCG = 1/log2(3) + 1/log2(4); IDCG = 1 + 1/log2(3)
    expected_a = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert per_query["a"] == pytest.approx(expected_a)
    assert per_query["b"] == pytest.approx(1 / math.log2(3))
    mean = ndcg_at_k(queries, labels, scores, k=3)
    assert mean.mean == pytest.approx((expected_a + 1 / math.log2(3)) / 2)
    assert (mean.queries_used, mean.queries_without_positive) == (2, 1)
