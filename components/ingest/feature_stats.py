"""One column's statistics in a split, accumulated in one pass, and the TFDV proto it becomes.

The ingest job's combiner (`statistics.SplitStatistics`) keeps one accumulator per column:

- `Numbers` (ranking features, funnel counts, position, task labels): count, missing, zeros,
  min, max, sum and sum of squares, and a quantiles sketch for the median, the quantiles and
  the histograms. The sums add each block's float sums as exact fractions, so the mean and
  the standard deviation (each rounded once) do not depend on the order in which blocks and
  partial accumulators are combined: one local worker or several, any runner;
- `Texts` (the text columns): present and empty counts and the total UTF-8 length, exact, a
  Misra-Gries sketch of the most frequent values and a K-minimum-values sketch of the number
  of distinct values.

The sketches are tfx_bsl's, the ones TensorFlow Data Validation (TFDV) computes its
statistics with: mergeable, constant memory, any runner. Their settings are TFDV's defaults:
quantiles with error `QUANTILES_EPSILON` (of the rank), `TOP_VALUES` most frequent values and
a rank histogram of `RANK_HISTOGRAM_BUCKETS` values; the distinct count is exact up to
`DISTINCT_BUCKETS` values and an estimate (a few % off) above. Top-value counts are exact for
a column with at most `RANK_HISTOGRAM_BUCKETS` distinct values in the split, and upper bounds
otherwise (over by at most rows / (`RANK_HISTOGRAM_BUCKETS` + 1)).

`Numbers.to_proto` and `Texts.to_proto` give `tensorflow_metadata`'s FeatureNameStatistics,
as TFDV's `generate_statistics_*` fill it: `common_stats` (non-missing, missing, values per
example), for numbers mean, std_dev (of the population), min, median, max, num_zeros and two
histograms (equal-width `STANDARD` buckets, and `QUANTILES` buckets of equal counts, whose
edges are the deciles), for texts the distinct count, top values, the rank histogram and the
average length in bytes. A missing value is an absent optional ranking feature, a position of
0.0 (unknown) or an empty text; it is left out of the value statistics and counted in
`num_missing`, as `statistics.json` counts it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx_bsl import sketches

QUANTILES_EPSILON = 0.01
HISTOGRAM_BUCKETS = 10  # the equal-width histogram
QUANTILE_BUCKETS = 10  # the quantiles histogram (deciles)
# The median and the equal-width histogram are read off QUANTILE_BUCKETS * FINE_QUANTILES
# quantiles, as TFDV reads them.
FINE_QUANTILES = 100
TOP_VALUES = 20
RANK_HISTOGRAM_BUCKETS = 1000
DISTINCT_BUCKETS = 1024
# Longer values count as one placeholder value in the top values (TFDV's bound and name).
LARGE_STRING_BYTES = 1024
LARGE_STRING_PLACEHOLDER = "__LARGE_BYTES__"
# The custom statistic of the query feature that holds the split's distinct queries, normalised
# as the split is decided (the count of counts.json; the query feature's `unique` counts the
# texts as written).
QUERIES_STAT = "normalised_queries"

INT = statistics_pb2.FeatureNameStatistics.INT
FLOAT = statistics_pb2.FeatureNameStatistics.FLOAT
STRING = statistics_pb2.FeatureNameStatistics.STRING


def _quantiles_sketch() -> sketches.QuantilesSketch:
    return sketches.QuantilesSketch(QUANTILES_EPSILON, 1 << 32, 1)


class Numbers:
    """The values of one numeric column: exact moments and extremes, and a quantiles sketch."""

    __slots__ = ("count", "missing", "zeros", "low", "high", "total", "squares", "sketch")

    def __init__(self) -> None:
        self.count = 0
        self.missing = 0
        self.zeros = 0
        self.low = math.inf
        self.high = -math.inf
        self.total = Fraction(0)
        self.squares = Fraction(0)
        self.sketch = _quantiles_sketch()

    def add(self, values: np.ndarray, missing: int) -> None:
        """Add the present values (float64) of a block and how many rows lacked one."""
        self.missing += int(missing)
        if not len(values):
            return
        self.count += len(values)
        self.zeros += int(np.count_nonzero(values == 0.0))
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        self.total += Fraction(float(values.sum()))
        self.squares += Fraction(float(np.dot(values, values)))
        self.sketch.AddValues(pa.array(values))

    def merge(self, other: Numbers) -> None:
        self.count += other.count
        self.missing += other.missing
        self.zeros += other.zeros
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        self.total += other.total
        self.squares += other.squares
        self.sketch.Merge(other.sketch)

    def mean(self) -> float | None:
        return float(self.total / self.count) if self.count else None

    def std(self) -> float | None:
        """The population standard deviation (TFDV's std_dev)."""
        if not self.count:
            return None
        mean = self.total / self.count
        return math.sqrt(max(float(self.squares / self.count - mean * mean), 0.0))

    def to_proto(self, name: str, kind: int) -> statistics_pb2.FeatureNameStatistics:
        """The column as TFDV's FeatureNameStatistics (`kind`: INT or FLOAT)."""
        feature = statistics_pb2.FeatureNameStatistics(type=kind)
        feature.path.step.append(name)
        stats = feature.num_stats
        _common(stats.common_stats, self.count, self.missing)
        if not self.count:
            return feature
        stats.mean, stats.std_dev = self.mean(), self.std()
        stats.min, stats.max, stats.num_zeros = self.low, self.high, self.zeros
        bounds, cumulative = self.sketch.GetQuantilesAndCumulativeWeights(
            QUANTILE_BUCKETS * FINE_QUANTILES
        )
        q = bounds.flatten().to_numpy()
        c = cumulative.flatten().to_numpy().astype(np.float64)
        stats.median = float(q[len(q) // 2])
        stats.histograms.append(equal_width_histogram(q, c, self.low, self.high))
        stats.histograms.append(quantiles_histogram(q[::FINE_QUANTILES], c[::FINE_QUANTILES]))
        return feature


class Texts:
    """The values of one text column: exact counts and length, top-value and distinct sketches.
    An empty value counts as missing."""

    __slots__ = ("present", "empty", "length", "top", "distinct")

    def __init__(self) -> None:
        self.present = 0
        self.empty = 0
        self.length = 0
        self.top = sketches.MisraGriesSketch(
            RANK_HISTOGRAM_BUCKETS,
            large_string_threshold=LARGE_STRING_BYTES,
            large_string_placeholder=LARGE_STRING_PLACEHOLDER,
        )
        self.distinct = sketches.KmvSketch(DISTINCT_BUCKETS)

    def add(self, values: Sequence[str]) -> None:
        """Add a block's values (str, "" when empty)."""
        array = pa.array(values, pa.large_string())
        lengths = pc.binary_length(array).to_numpy(zero_copy_only=False)
        present = lengths > 0
        count = int(np.count_nonzero(present))
        self.present += count
        self.empty += len(lengths) - count
        if count:
            self.length += int(lengths.sum())
            if count < len(lengths):
                array = array.filter(pa.array(present))
            self.top.AddValues(array)
            self.distinct.AddValues(array)

    def merge(self, other: Texts) -> None:
        self.present += other.present
        self.empty += other.empty
        self.length += other.length
        self.top.Merge(other.top)
        self.distinct.Merge(other.distinct)

    def to_proto(self, name: str) -> statistics_pb2.FeatureNameStatistics:
        """The column as TFDV's FeatureNameStatistics of a STRING feature."""
        feature = statistics_pb2.FeatureNameStatistics(type=STRING)
        feature.path.step.append(name)
        stats = feature.string_stats
        _common(stats.common_stats, self.present, self.empty)
        if not self.present:
            return feature
        stats.unique = self.distinct.Estimate()
        stats.avg_length = self.length / self.present
        ranked = self.top.Estimate().to_pylist()
        for rank, item in enumerate(ranked[:RANK_HISTOGRAM_BUCKETS]):
            value = item["values"].decode("utf-8")
            if rank < TOP_VALUES:
                stats.top_values.add(value=value, frequency=item["counts"])
            stats.rank_histogram.buckets.add(
                low_rank=rank, high_rank=rank, label=value, sample_count=item["counts"]
            )
        return feature


def _common(common: statistics_pb2.CommonStatistics, present: int, missing: int) -> None:
    """A feature with one value in each example that has it (every column of a row)."""
    common.num_non_missing = present
    common.num_missing = missing
    common.tot_num_values = present
    if present:
        common.min_num_values = common.max_num_values = 1
        common.avg_num_values = 1.0
        common.num_values_histogram.type = statistics_pb2.Histogram.QUANTILES
        for _ in range(QUANTILE_BUCKETS):
            common.num_values_histogram.buckets.add(
                low_value=1.0, high_value=1.0, sample_count=present / QUANTILE_BUCKETS
            )


def equal_width_histogram(
    quantiles: np.ndarray, cumulative: np.ndarray, low: float, high: float
) -> statistics_pb2.Histogram:
    """`HISTOGRAM_BUCKETS` buckets of equal width from `low` to `high`, their counts read off
    the quantiles (boundaries, and how many values are at or below each): the values up to a
    boundary since the one before count at the boundary. Exact while the quantiles are every
    value (fewer values than quantiles, and a sketch that still holds them all); otherwise each
    edge is off by at most the share of one quantile (1 / (QUANTILE_BUCKETS * FINE_QUANTILES)
    of the values) besides the sketch's error. A bucket holds (low, high], the first
    [low, high], as the Histogram proto says."""
    histogram = statistics_pb2.Histogram(type=statistics_pb2.Histogram.STANDARD)
    total = float(cumulative[-1])
    if low == high:
        histogram.buckets.add(low_value=low, high_value=high, sample_count=total)
        return histogram
    edges = np.linspace(low, high, HISTOGRAM_BUCKETS + 1)
    last = np.searchsorted(quantiles, edges, side="right") - 1  # last boundary at or below
    at_or_below = np.where(last >= 0, cumulative[np.maximum(last, 0)], 0.0)
    at_or_below[-1] = total
    counts = np.diff(np.concatenate(([0.0], at_or_below[1:])))
    for i in range(HISTOGRAM_BUCKETS):
        histogram.buckets.add(
            low_value=float(edges[i]), high_value=float(edges[i + 1]), sample_count=counts[i]
        )
    return histogram


def quantiles_histogram(quantiles: np.ndarray, cumulative: np.ndarray) -> statistics_pb2.Histogram:
    """The buckets between consecutive quantiles, each with the values it holds. Buckets that
    end at the same value (a value that fills several quantiles) share their count evenly, as
    TFDV's do, so that each holds about the same share of the values."""
    histogram = statistics_pb2.Histogram(type=statistics_pb2.Histogram.QUANTILES)
    lows, highs = quantiles[:-1], quantiles[1:]
    counts = np.diff(cumulative)
    n = len(counts)
    start = 0
    while start < n:
        end = start + 1
        while end < n and highs[end] == highs[start]:
            end += 1
        counts[start:end] = counts[start:end].sum() / (end - start)
        start = end
    first = 1  # the values at the minimum go to the buckets that are that one point
    while first < n and lows[first] == lows[0] and highs[first] == highs[0]:
        first += 1
    counts[:first] += cumulative[0] / first
    for low, high, count in zip(lows, highs, counts, strict=True):
        histogram.buckets.add(low_value=float(low), high_value=float(high), sample_count=count)
    return histogram
