"""One column's accumulator and its TFDV proto: exact moments, sketched quantiles and
histograms within their stated error, checked against numpy over the same values."""

import math
from fractions import Fraction

import numpy as np
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from components.ingest import feature_stats as F


def _buckets(histogram):
    return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]


def test_numbers_over_many_blocks_match_numpy_within_the_sketch_error():
    values = np.random.default_rng(3).lognormal(size=120_000)
    values[::50] = 0.0
    left, right = F.Numbers(), F.Numbers()
    for i, block in enumerate(np.array_split(values, 40)):
        (left if i % 2 else right).add(block, missing=1)
    left.merge(right)
    stats = left.to_proto("price", F.FLOAT).num_stats
    n = len(values)
    assert (stats.common_stats.num_non_missing, stats.common_stats.num_missing) == (n, 40)
    assert stats.num_zeros == n // 50
    assert (stats.min, stats.max) == (values.min(), values.max())
    assert stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert stats.std_dev == pytest.approx(values.std(), rel=1e-9)
    ordered = np.sort(values)

    def rank(x):  # the share of values at or below x
        return np.searchsorted(ordered, x, side="right") / n

    assert rank(stats.median) == pytest.approx(0.5, abs=F.QUANTILES_EPSILON)
    standard, quantiles = stats.histograms
    edges = np.linspace(values.min(), values.max(), F.HISTOGRAM_BUCKETS + 1)
    exact = np.diff(np.concatenate(([0], np.searchsorted(ordered, edges[1:], side="right"))))
    got = _buckets(standard)
    assert [lo for lo, *_ in got] == pytest.approx(list(edges[:-1]))
    assert [hi for _, hi, _ in got] == pytest.approx(list(edges[1:]))
    tolerance = (F.QUANTILES_EPSILON + 1 / (F.QUANTILE_BUCKETS * F.FINE_QUANTILES)) * n
    assert np.abs(np.array([c for *_, c in got]) - exact).max() <= tolerance
    assert sum(c for *_, c in got) == pytest.approx(n)
    deciles = [b.high_value for b in quantiles.buckets]
    assert quantiles.buckets[0].low_value == values.min() and deciles[-1] == values.max()
    for i, boundary in enumerate(deciles[:-1], start=1):
        assert rank(boundary) == pytest.approx(i / F.QUANTILE_BUCKETS, abs=F.QUANTILES_EPSILON)
    assert [b.sample_count for b in quantiles.buckets] == pytest.approx([n / 10] * 10, rel=0.1)


def test_moments_do_not_depend_on_how_blocks_are_combined():
    """One worker adds a split's blocks in file order; several add their own and merge the
    results in any order. The blocks' sums add exactly, so every way gives the same bits:
    float addition in file order would lose both 1s (1e16 + 1 rounds to 1e16)."""
    blocks = [np.array([x]) for x in (1e16, 1.0, 1.0, -1e16, 0.75)]

    def numbers(*parts):
        stats = F.Numbers()
        for block in parts:
            stats.add(block, 0)
        return stats

    in_order = numbers(*blocks)
    first, second = numbers(blocks[0], blocks[3]), numbers(blocks[4], blocks[2], blocks[1])
    second.merge(first)
    tree = numbers()
    for part in (numbers(blocks[3]), numbers(blocks[1], blocks[4]), numbers(blocks[0], blocks[2])):
        tree.merge(part)
    mean = Fraction(11, 20)  # (1e16 + 1 + 1 - 1e16 + 0.75) / 5
    squares = 2 * Fraction(1e32) + 2 + Fraction(9, 16)  # each block's square, as a float
    std = math.sqrt(float(squares / 5 - mean**2))
    assert float(sum(np.concatenate(blocks))) / 5 != float(mean)  # in file order, floats err
    for stats in (in_order, second, tree):
        assert stats.count == 5
        assert stats.mean() == float(mean)
        assert stats.std() == std


def test_histograms_from_quantiles_by_hand():
    # 0, 0, 0, 1, 3, 3: boundaries and how many values are at or below each.
    q = np.array([0.0, 0.0, 0.0, 1.0, 3.0])
    c = np.array([3.0, 3.0, 3.0, 4.0, 6.0])
    # The two buckets [0, 0] share the three zeros; (0, 1] holds 1, (1, 3] both 3s.
    assert _buckets(F.quantiles_histogram(q, c)) == [
        (0.0, 0.0, 1.5),
        (0.0, 0.0, 1.5),
        (0.0, 1.0, 1.0),
        (1.0, 3.0, 2.0),
    ]
    standard = _buckets(F.equal_width_histogram(q, c, 0.0, 3.0))
    assert len(standard) == F.HISTOGRAM_BUCKETS
    assert standard[0] == (0.0, pytest.approx(0.3), 3.0)  # [0, 0.3]: the zeros
    counts = [count for *_, count in standard]
    assert counts == [3, 0, 0, 1, 0, 0, 0, 0, 0, 2]  # 1 in (0.9, 1.2], the 3s in (2.7, 3]
    one_value = F.equal_width_histogram(np.array([2.0, 2.0]), np.array([5.0, 5.0]), 2.0, 2.0)
    assert _buckets(one_value) == [(2.0, 2.0, 5.0)]
    assert one_value.type == statistics_pb2.Histogram.STANDARD


def test_texts_count_distinct_and_top_values():
    texts, other = F.Texts(), F.Texts()
    texts.add(["sofa", "", "lamp", "sofa"])
    other.add(["sofa", "x" * (F.LARGE_STRING_BYTES + 1), ""])
    other.add([f"rare {i}" for i in range(3000)])
    texts.merge(other)
    stats = texts.to_proto("product_type").string_stats
    assert (stats.common_stats.num_non_missing, stats.common_stats.num_missing) == (3005, 2)
    top = [(v.value, v.frequency) for v in stats.top_values]
    assert top[0][0] == "sofa" and len(top) == F.TOP_VALUES
    # More distinct values than the sketch keeps: a count is over by at most rows / (k + 1).
    assert 3 <= top[0][1] <= 3 + 3005 / (F.RANK_HISTOGRAM_BUCKETS + 1)
    # Beyond DISTINCT_BUCKETS distinct values the count is an estimate.
    assert stats.unique == pytest.approx(3003, rel=0.1)
    lengths = 4 * 3 + 4 + (F.LARGE_STRING_BYTES + 1) + sum(len(f"rare {i}") for i in range(3000))
    assert stats.avg_length == pytest.approx(lengths / 3005)
    few = F.Texts()
    few.add(["a", "b", "a", "c", ""])
    exact = few.to_proto("color").string_stats
    assert exact.unique == 3
    assert [(v.value, v.frequency) for v in exact.top_values] == [("a", 2), ("b", 1), ("c", 1)]
    assert F.Texts().to_proto("gender").string_stats.common_stats.num_non_missing == 0
