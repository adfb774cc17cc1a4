"""The blessing gate: may the candidate model replace the one in production?

Four kinds of check, each with its value, threshold, outcome and a sentence:

- floor: every gated metric with a floor must reach it (always, also on the first run);
- champion: when a model is in production, every gated metric must not fall more than its
  allowed drop below the champion's value on the same split;
- significance: when a model is in production, the per-query paired NDCG@5 difference
  (candidate - champion) on the main task must be significantly positive ("better") or not
  significantly negative ("not_worse"), judged by its confidence interval;
- reference: on every task, also on the first run, the candidate's NDCG@5 must not be
  significantly below that of the best no-training reference (references.py): a one-sided
  paired t-test over the test queries with a positive label, failing at p < reference_alpha.
  With reference_check "warn" a failing reference check is recorded and warned about in the
  reasons but does not block (its outcome is "warn").
The candidate is blessed when every check passes, or when force_push is set, in which case
the blessing says it was forced and which checks failed anyway.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from components.evaluate.gate_config import BETTER, NOT_WORSE, OFF, WARN, GateConfig

if TYPE_CHECKING:
    from components.evaluate.references import ReferenceComparison
    from components.evaluate.stats import PairedComparison

FLOOR = "floor"
CHAMPION = "champion"
SIGNIFICANCE = "significance"
REFERENCE = "reference"
PASS, FAIL, WARNED = "pass", "fail", "warn"


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison made by the gate.

    Args:
        check: "floor", "champion", "significance" or "reference".
        metric: full metric key, e.g. "click/auc".
        value: what was compared (NaN when undefined): the candidate's metric, for the
            significance check a bound of the paired confidence interval, for the reference
            check the one-sided p-value.
        threshold: what it had to reach: the floor, the champion's value - allowed drop, 0,
            or (reference) the level the p-value must not fall below.
        passed: whether it did.
        reason: one sentence with the numbers.
        warn_only: a failure warns but does not block (reference_check "warn").
    """

    check: str
    metric: str
    value: float
    threshold: float
    passed: bool
    reason: str
    warn_only: bool = False

    @property
    def outcome(self) -> str:
        if self.passed:
            return PASS
        return WARNED if self.warn_only else FAIL


@dataclasses.dataclass(frozen=True)
class Blessing:
    """The gate's verdict.

    Args:
        blessed: whether the candidate may be pushed: every check passed, or force_push.
        checks: every check made: floors, then champion checks, then significance.
        reasons: human-readable summary: the verdict, what the candidate was compared with,
            then the reason of each failed check.
        champion_uri: the champion compared against, or None on a first run.
        forced: blessed only because force_push was set (some check failed).
        first_run: no champion was found, so only the floors (and the reference check)
            applied.
        settings: the gate's settings, resolved per metric (GateConfig.to_dict).
        paired: per task, the paired NDCG@5 comparison with the champion (None on a first
            run; a task's entry is None when its predictions were not finite).
        references: per task, the comparison with the best no-training reference (None when
            no references were scored; a task's entry is None when none is defined on it).
    """

    blessed: bool
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    champion_uri: str | None = None
    forced: bool = False
    first_run: bool = False
    settings: Mapping = dataclasses.field(default_factory=dict)
    paired: Mapping[str, PairedComparison | None] | None = None
    references: Mapping[str, ReferenceComparison | None] | None = None

    @property
    def checks_passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> tuple[Check, ...]:
        """The checks that failed and block (not those that only warn)."""
        return tuple(c for c in self.checks if not c.passed and not c.warn_only)

    @property
    def warnings(self) -> tuple[Check, ...]:
        """The checks that failed but only warn."""
        return tuple(c for c in self.checks if not c.passed and c.warn_only)

    def to_dict(self) -> dict:
        """A JSON-ready dict; NaN values become None (null)."""
        return {
            "blessed": self.blessed,
            "checks_passed": self.checks_passed,
            "forced": self.forced,
            "failed_checks": [f"{c.check}:{c.metric}" for c in self.failed],
            "warnings": [f"{c.check}:{c.metric}" for c in self.warnings],
            "first_run": self.first_run,
            "reasons": list(self.reasons),
            "champion_uri": self.champion_uri,
            "settings": dict(self.settings),
            "paired": None
            if self.paired is None
            else {t: None if p is None else p.to_dict() for t, p in self.paired.items()},
            "references": None
            if self.references is None
            else {t: None if r is None else r.to_dict() for t, r in self.references.items()},
            "checks": [
                {
                    # The outcome ("pass", "fail", "warn") says whether a failure only warns.
                    **{k: v for k, v in dataclasses.asdict(c).items() if k != "warn_only"},
                    "value": _finite_or_none(c.value),
                    "threshold": _finite_or_none(c.threshold),
                    "outcome": c.outcome,
                }
                for c in self.checks
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _get(metrics: Mapping[str, float], key: str, whose: str) -> float:
    if key not in metrics:
        raise ValueError(f"the {whose} metrics have no {key!r}; they have {sorted(metrics)}")
    value = metrics[key]
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"the {whose} metric {key!r} must be a number, got {value!r}")
    return float(value)


def _floor_check(metric: str, value: float, floor: float) -> Check:
    if math.isnan(value):
        reason = (
            f"{metric} is undefined (NaN) on this split, so it cannot clear the floor {floor:.4f}"
        )
        return Check(FLOOR, metric, value, floor, False, reason)
    passed = value >= floor
    relation = ">=" if passed else "<"
    reason = f"{metric} = {value:.4f} {relation} floor {floor:.4f}"
    return Check(FLOOR, metric, value, floor, passed, reason)


def _champion_check(metric: str, value: float, champion: float, max_drop: float) -> Check:
    threshold = champion - max_drop
    if math.isnan(value):
        reason = f"{metric} is undefined (NaN) for the candidate, so it cannot be compared with the champion"
        return Check(CHAMPION, metric, value, threshold, False, reason)
    if math.isnan(champion):
        # Same split for both models: only non-finite champion predictions make this happen,
        # and a broken champion must not block its own replacement.
        reason = (
            f"{metric} = {value:.4f}; the champion's value is undefined (NaN), so it does not block"
        )
        return Check(CHAMPION, metric, value, threshold, True, reason)
    passed = value >= threshold
    relation = ">=" if passed else "<"
    reason = (
        f"{metric} = {value:.4f} {relation} champion {champion:.4f} - max_drop {max_drop:.4f}"
        f" = {threshold:.4f}"
    )
    return Check(CHAMPION, metric, value, threshold, passed, reason)


def _significance_check(
    config: GateConfig, paired: PairedComparison | None, candidate_value: float
) -> Check:
    metric, mode = config.paired_key, config.significance
    level = f"{config.confidence:.0%}"
    if paired is None:
        # Undefined per-query values: the candidate's predictions are broken (it fails), or
        # the champion's are (a broken champion does not block its replacement).
        passed = not math.isnan(candidate_value)
        whose = "the champion's" if passed else "the candidate's"
        reason = (
            f"{metric} paired difference is undefined: {whose} predictions are not finite, "
            + ("so it does not block" if passed else "so it cannot be shown")
        )
        return Check(SIGNIFICANCE, metric, math.nan, 0.0, passed, reason)
    summary = (
        f"{metric} paired difference (candidate - champion) over {paired.queries} queries: "
        f"mean {paired.mean_difference:+.4f}, {level} CI [{paired.ci_low:+.4f}, "
        f"{paired.ci_high:+.4f}], p = {_p(paired.p_value)}"
    )
    if paired.queries < 2:
        # One query (or none) cannot show a difference either way.
        passed = mode == NOT_WORSE
        value = math.nan
        verdict = "too few queries with a positive label to test; " + (
            "it does not block" if passed else "so the candidate cannot be shown better"
        )
    elif mode == BETTER:
        value, passed = paired.ci_low, paired.ci_low > 0.0
        verdict = (
            "significantly better: the CI's lower bound is above 0"
            if passed
            else "not significantly better: the CI's lower bound is not above 0"
        )
    else:
        value, passed = paired.ci_high, paired.ci_high >= 0.0
        verdict = (
            "not significantly worse: the CI reaches 0 or above"
            if passed
            else "significantly worse: the whole CI is below 0"
        )
    return Check(SIGNIFICANCE, metric, value, 0.0, passed, f"{summary}: {verdict}")


def _reference_check(
    config: GateConfig, task: str, comparison: ReferenceComparison, candidate_value: float
) -> Check:
    """The candidate's NDCG@5 on `task` must not be significantly below the best reference's
    (one-sided paired t-test over the queries with a positive label, level reference_alpha)."""
    metric, alpha = f"{task}/ndcg@5", config.reference_alpha
    warn_only = config.reference_check == WARN
    name, paired = comparison.reference, comparison.paired
    if paired is None or math.isnan(candidate_value):
        reason = (
            f"{metric} is undefined for the candidate (predictions not finite), so it cannot be "
            f"compared with reference {name} {comparison.reference_value:.4f}"
        )
        return Check(REFERENCE, metric, math.nan, alpha, False, reason, warn_only)
    p = comparison.p_less
    detail = (
        f"paired over {paired.queries} queries: {paired.mean_difference:+.4f}, one-sided "
        f"p = {_p(p)}"
    )
    if math.isnan(p):
        # Fewer than two queries, or the same difference on every query: nothing to test.
        reason = (
            f"{metric} = {candidate_value:.4f} against reference {name} "
            f"{comparison.reference_value:.4f} ({detail}): cannot be tested, so it does not block"
        )
        return Check(REFERENCE, metric, p, alpha, True, reason, warn_only)
    passed = p >= alpha
    relation = "is not" if passed else "is"
    reason = (
        f"{metric} = {candidate_value:.4f} {relation} significantly below reference {name} "
        f"{comparison.reference_value:.4f} ({detail})"
    )
    return Check(REFERENCE, metric, p, alpha, passed, reason, warn_only)


def _p(p_value: float) -> str:
    return "undefined" if math.isnan(p_value) else f"{p_value:.4g}"


def _significance_rule(config: GateConfig) -> str:
    if config.significance == OFF:
        return "no significance check"
    wanted = "significantly better" if config.significance == BETTER else "not significantly worse"
    return f"{config.paired_key} per query must be {wanted} at {config.confidence:.0%}"


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    config: GateConfig,
    paired: Mapping[str, PairedComparison | None] | None = None,
    *,
    champion_uri: str | None = None,
    repository: str | None = None,
    not_comparable: str | None = None,
    references: Mapping[str, ReferenceComparison | None] | None = None,
) -> Blessing:
    """Bless the candidate when every check passes (or force_push is set).

    Args:
        candidate: the candidate's metrics, keyed "<task>/<metric>" (see compute_metrics).
        champion: the champion's metrics on the same split, or None when nothing is in
            production yet: then only the floors apply.
        config: floors, allowed drops, the significance rule and force_push, for the
            evaluated tasks (GateConfig.for_tasks).
        paired: per task, the paired NDCG@5 comparison candidate - champion over the same
            queries (None for a task whose predictions were not finite). Needed when there
            is a champion and config.significance is not "off".
        champion_uri: where the champion came from, for the explanation.
        repository: where a champion was looked for, for the first-run explanation.
        not_comparable: why the model in production was not compared with (a model of
            another funnel), when `champion` is None because of it.
        references: per task, the candidate against the best no-training reference
            (references.compare_with_references); None: none were scored, no reference
            check. Ignored when config.reference_check is "off".
    """
    keys = config.gated()
    checks = []
    for key in keys:
        floor = config.floor(key)
        if floor is not None:
            checks.append(_floor_check(key, _get(candidate, key, "candidate"), floor))
    if config.reference_check == OFF:
        references = None
    reference_checks = [
        _reference_check(config, task, comparison, _get(candidate, f"{task}/ndcg@5", "candidate"))
        for task, comparison in (references or {}).items()
        if comparison is not None
    ]
    if champion is None:
        where = f" in {repository}" if repository else ""
        first = f"{not_comparable}, so" if not_comparable else f"no champion{where}:"
        applied = "floors and the reference check" if reference_checks else "floors"
        context = (
            f"{first} first run, only {applied} apply "
            "(no comparison with a champion, no significance test)"
        )
        paired = None
    else:
        for key in keys:
            checks.append(
                _champion_check(
                    key,
                    _get(candidate, key, "candidate"),
                    _get(champion, key, "champion"),
                    config.allowed_drop(key),
                )
            )
        if config.significance != OFF:
            if paired is None or config.main_task not in paired:
                raise ValueError(
                    f"the significance check needs the paired comparison of {config.main_task!r}"
                )
            checks.append(
                _significance_check(
                    config,
                    paired[config.main_task],
                    _get(candidate, config.paired_key, "candidate"),
                )
            )
        drops = ", ".join(f"{k} {v:g}" for k, v in config.to_dict()["max_drop_vs_champion"].items())
        context = (
            f"compared with champion {champion_uri or '(unnamed)'} "
            f"(allowed drops: {drops}; {_significance_rule(config)})"
        )

    checks += reference_checks
    failed = [c for c in checks if not c.passed and not c.warn_only]
    warned = [c for c in checks if not c.passed and c.warn_only]
    forced = bool(failed) and config.force_push
    if forced:
        names = ", ".join(f"{c.check} {c.metric}" for c in failed)
        verdict = (
            f"blessed because force_push is set, although {len(failed)} of {len(checks)} "
            f"checks failed: {names}"
        )
    elif failed:
        verdict = f"not blessed: {len(failed)} of {len(checks)} checks failed"
    elif warned:
        verdict = (
            f"blessed: {len(checks) - len(warned)} of {len(checks)} checks passed; the other "
            f"{len(warned)} only warn (reference_check is {WARN!r})"
        )
    else:
        verdict = f"blessed: all {len(checks)} checks passed"
        if config.force_push:
            verdict += " (force_push was set but not needed)"
    return Blessing(
        blessed=not failed or forced,
        checks=tuple(checks),
        reasons=(
            verdict,
            context,
            *(c.reason for c in failed),
            *(f"warning: {c.reason}" for c in warned),
        ),
        champion_uri=champion_uri if champion is not None else None,
        forced=forced,
        first_run=champion is None,
        settings=config.to_dict(),
        paired=None if paired is None else dict(paired),
        references=None if references is None else dict(references),
    )
