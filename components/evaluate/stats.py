"""Is a difference between two models over the same queries real? Paired tests over queries."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """Model A minus model B over the queries both were scored on.

    Args:
        queries: number of paired queries.
        mean_difference: mean of the per-query differences (A - B).
        ci_low, ci_high: two-sided confidence interval of the mean difference (Student t).
        p_value: two-sided paired t-test of "no difference"; NaN when undefined (fewer than
            two queries, or all differences equal).
        confidence: the interval's level.
    """

    queries: int
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float

    def to_dict(self) -> dict:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in dataclasses.asdict(self).items()
        }


def paired_comparison(a: dict, b: dict, confidence: float = 0.95) -> PairedComparison:
    """Compare per-query metric values {query: value} of two models on their shared queries."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    shared = sorted(set(a) & set(b), key=str)
    x = np.array([a[q] for q in shared], dtype=np.float64)
    y = np.array([b[q] for q in shared], dtype=np.float64)
    n = len(shared)
    if n == 0:
        return PairedComparison(0, math.nan, math.nan, math.nan, math.nan, confidence)
    diff = x - y
    mean = float(diff.mean())
    if n < 2 or np.allclose(diff, diff[0]):
        return PairedComparison(n, mean, mean, mean, math.nan, confidence)
    result = stats.ttest_rel(x, y)
    interval = result.confidence_interval(confidence)
    return PairedComparison(
        queries=n,
        mean_difference=mean,
        ci_low=float(interval.low),
        ci_high=float(interval.high),
        p_value=float(result.pvalue),
        confidence=confidence,
    )


def one_sided_p_greater(paired: PairedComparison) -> float:
    """p-value of the one-sided paired t-test "mean difference > 0", from the two-sided one."""
    p = paired.p_value
    if math.isnan(p):
        return math.nan
    return p / 2 if paired.mean_difference > 0 else 1.0 - p / 2


def one_sided_p_less(paired: PairedComparison) -> float:
    """p-value of the one-sided paired t-test "mean difference < 0", from the two-sided one."""
    p = paired.p_value
    if math.isnan(p):
        return math.nan
    return p / 2 if paired.mean_difference < 0 else 1.0 - p / 2
