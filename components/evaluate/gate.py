"""The blessing gate: may the candidate model replace the one in production?

Every gated metric of every task must clear an absolute floor, and, when a champion exists,
must not fall more than `max_drop` below the champion's value on the same split. The result
lists each check with its numbers and a sentence, so a refusal (or a blessing) explains itself.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping

from components import schema

FLOOR = "floor"
CHAMPION = "champion"


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison made by the gate.

    Args:
        check: "floor" or "champion".
        metric: full metric key, e.g. "click/auc".
        value: the candidate's value (NaN when undefined).
        threshold: the value it had to reach: the floor, or the champion's value - max_drop.
        passed: whether value >= threshold.
        reason: one sentence with the numbers.
    """

    check: str
    metric: str
    value: float
    threshold: float
    passed: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class Blessing:
    """The gate's verdict.

    Args:
        blessed: True when every check passed.
        checks: every check made, floors first.
        reasons: human-readable summary: the verdict, what the candidate was compared with,
            then the reason of each failed check.
        champion_uri: the champion compared against, or None on a first run.
    """

    blessed: bool
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    champion_uri: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict; NaN values become None (null)."""
        return {
            "blessed": self.blessed,
            "reasons": list(self.reasons),
            "champion_uri": self.champion_uri,
            "checks": [
                {
                    **dataclasses.asdict(c),
                    "value": _finite_or_none(c.value),
                    "threshold": _finite_or_none(c.threshold),
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
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"the {whose} metric {key!r} must be a number, got {value!r}")
    return float(value)


def _floor_check(metric: str, value: float, floor: float) -> Check:
    check = functools.partial(Check, check=FLOOR, metric=metric, value=value, threshold=floor)
    if math.isnan(value):
        reason = (
            f"{metric} is undefined (NaN) on this split, so it cannot clear the floor {floor:.4f}"
        )
        return check(passed=False, reason=reason)
    passed = value >= floor
    relation = ">=" if passed else "<"
    return check(passed=passed, reason=f"{metric} = {value:.4f} {relation} floor {floor:.4f}")


def _champion_check(metric: str, value: float, champion: float, max_drop: float) -> Check:
    threshold = champion - max_drop
    check = functools.partial(
        Check, check=CHAMPION, metric=metric, value=value, threshold=threshold
    )
    if math.isnan(value):
        reason = f"{metric} is undefined (NaN) for the candidate, so it cannot be compared with the champion"
        return check(passed=False, reason=reason)
    if math.isnan(champion):
        # Same split for both models: only non-finite champion predictions make this happen,
        # and a broken champion must not block its own replacement.
        reason = (
            f"{metric} = {value:.4f}; the champion's value is undefined (NaN), so it does not block"
        )
        return check(passed=True, reason=reason)
    passed = value >= threshold
    relation = ">=" if passed else "<"
    reason = (
        f"{metric} = {value:.4f} {relation} champion {champion:.4f} - max_drop {max_drop:.4f}"
        f" = {threshold:.4f}"
    )
    return check(passed=passed, reason=reason)


def decide(
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    floors: Mapping[str, float],
    max_drop: float,
    *,
    champion_uri: str | None = None,
    repository: str | None = None,
) -> Blessing:
    """Bless the candidate when every gated metric clears its floor and holds up to the champion.

    Args:
        candidate: the candidate's metrics, keyed "<task>/<metric>" (see compute_metrics).
        champion: the champion's metrics on the same split, or None when nothing is in
            production yet (then only the floors apply).
        floors: metric name (e.g. "auc", "ndcg@5") -> minimum every task in schema.TASKS must
            reach. Its keys are the gated metrics.
        max_drop: how far below the champion a candidate may fall, >= 0.
        champion_uri: where the champion came from, for the explanation.
        repository: where a champion was looked for, for the first-run explanation.
    """
    if not floors:
        raise ValueError("the gate needs at least one gated metric in floors, got none")
    for name, floor in floors.items():
        if "/" in name:
            raise ValueError(f"floors are per metric name (e.g. 'auc'), not per task, got {name!r}")
        if not math.isfinite(floor):
            raise ValueError(f"floor for {name!r} must be finite, got {floor}")
    if not math.isfinite(max_drop) or max_drop < 0:
        raise ValueError(f"max_drop must be a finite number >= 0, got {max_drop}")

    keys = [f"{task}/{name}" for name in floors for task in schema.TASKS]
    checks = [
        _floor_check(key, _get(candidate, key, "candidate"), float(floors[key.split("/", 1)[1]]))
        for key in keys
    ]
    if champion is None:
        where = f" in {repository}" if repository else ""
        context = f"no champion{where}: only floors apply"
    else:
        checks += [
            _champion_check(
                key, _get(candidate, key, "candidate"), _get(champion, key, "champion"), max_drop
            )
            for key in keys
        ]
        context = f"compared with champion {champion_uri or '(unnamed)'} with max_drop {max_drop}"

    failed = [c for c in checks if not c.passed]
    if failed:
        verdict = f"not blessed: {len(failed)} of {len(checks)} checks failed"
    else:
        verdict = f"blessed: all {len(checks)} checks passed"
    return Blessing(
        blessed=not failed,
        checks=tuple(checks),
        reasons=(verdict, context, *(c.reason for c in failed)),
        champion_uri=champion_uri if champion is not None else None,
    )
