"""The engagement relevance label's formula, by hand."""

import numpy as np
import pytest

from components.transform.relevance import (
    debiased_ctr,
    engagement_relevance,
    examination,
    spearman_per_query,
    within_query_percentile,
)

Q = np.array(["a", "a", "a", "b"])


def test_examination_is_position_to_the_minus_eta():
    np.testing.assert_allclose(examination([1.0, 2.0, 4.0, 0.0], eta=1.0), [1, 0.5, 0.25, 1])
    np.testing.assert_allclose(examination([4.0], eta=0.5), [0.5])


def test_debiased_ctr_by_hand():
    clicks, impressions, position = (
        np.array([10, 5, 0, 3]),
        np.array([100, 100, 50, 10]),
        np.array([1.0, 2.0, 4.0, 1.0]),
    )
    # Query a: examined impressions 100, 50, 12.5; its rate m = 15 / 162.5.
    m = 15 / 162.5
    expected = [(10 + 10 * m) / 110, (5 + 10 * m) / 60, (0 + 10 * m) / 22.5, (3 + 10 * 0.3) / 20]
    np.testing.assert_allclose(debiased_ctr(Q, clicks, impressions, position), expected)
    # Without smoothing, position 2's 5 clicks in 100 views count like 10 in 100 at the top.
    raw = debiased_ctr(Q, clicks, impressions, position, prior=0.0)
    assert raw[0] == pytest.approx(raw[1]) == pytest.approx(0.1)


def test_percentiles_within_each_query():
    np.testing.assert_allclose(
        within_query_percentile(Q, np.array([3.0, 1.0, 2.0, 9.0])), [1.0, 0.0, 0.5, 0.5]
    )
    np.testing.assert_allclose(  # ties share their mean rank
        within_query_percentile(np.array(["a"] * 3), np.array([1.0, 1.0, 2.0])), [0.25, 0.25, 1.0]
    )


def test_the_label_mixes_both_ranks_on_a_0_to_3_scale():
    clicks, impressions, position = (
        np.array([10, 5, 0, 3]),
        np.array([100, 100, 50, 10]),
        np.ones(4),
    )
    similarity = np.array([0.1, 0.9, 0.5, 0.2])
    # Click ranks in a: 1, 0.5, 0; similarity ranks: 0, 1, 0.5.
    label = engagement_relevance(Q, clicks, impressions, position, similarity, weight=0.5)
    np.testing.assert_allclose(label, [1.5, 2.25, 0.75, 1.5])
    only_clicks = engagement_relevance(Q, clicks, impressions, position, similarity, weight=1.0)
    np.testing.assert_allclose(only_clicks, [3.0, 1.5, 0.0, 1.5])
    with pytest.raises(ValueError, match="weight"):
        engagement_relevance(Q, clicks, impressions, position, similarity, weight=2.0)


def test_spearman_per_query_skips_queries_without_a_ranking():
    query = np.array(["a"] * 4 + ["b"] * 3 + ["c"] * 3)
    a = np.array([1, 2, 3, 4, 1, 2, 3, 5, 5, 5])
    b = np.array([1, 2, 3, 4, 3, 2, 1, 1, 2, 3])
    # a: +1, b: -1, c: a constant, left out.
    assert spearman_per_query(query, a, b) == (0.0, 2)
