"""What the gate asks of a candidate: floors, allowed drops, the significance rule, force-push.

Floors and allowed drops are keyed by metric name for every task ("auc", "ndcg@5") or by one
task's metric ("purchase/auc"). For one task's metric the most specific key wins: "task/metric",
then "metric", then (for drops) the default drop. A metric is gated when a floor or an allowed
drop names it.

The tasks come from the evaluated data's schema, which a pipeline's parameters cannot know: a
GateConfig checks the keys' syntax when it is made, and the task names they hold when it is
given the evaluated tasks (`for_tasks`), before the gate is applied.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping

# How the paired per-query difference on the main task must look for the candidate to
# displace the champion.
BETTER = "better"  # significantly positive: the confidence interval lies above 0
NOT_WORSE = "not_worse"  # not significantly negative: the interval reaches 0 or above
OFF = "off"  # no significance check
SIGNIFICANCE_MODES = (BETTER, NOT_WORSE, OFF)
# The per-query metric the paired test compares.
PAIRED_METRIC = "ndcg@5"
# What the check against the no-training references (references.py) does when the candidate's
# NDCG@5 on a task is significantly below the best reference's.
GATE = "gate"  # refuses the candidate
WARN = "warn"  # recorded, and its reason given as a warning, but it does not block
# OFF: no references are scored, no check
REFERENCE_MODES = (GATE, WARN, OFF)


def split_key(key: str) -> tuple[str | None, str]:
    """("click", "auc") for "click/auc"; (None, "auc") for "auc", which means every task.

    Only the syntax is checked: whether the task is one of the evaluated ones is for
    `GateConfig.for_tasks`."""
    if not isinstance(key, str) or not key or key.count("/") > 1:
        raise ValueError(f"a gate key is 'metric' or 'task/metric', got {key!r}")
    if "/" not in key:
        return None, key
    task, metric = key.split("/")
    if not task:
        raise ValueError(f"gate key {key!r} names no task")
    if not metric:
        raise ValueError(f"gate key {key!r} names no metric")
    return task, metric


def _thresholds(name: str, values: Mapping, non_negative: bool) -> Mapping[str, float]:
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{name} must be a dict of 'metric' or 'task/metric' -> number, got {values!r}"
        )
    checked = {}
    for key, value in values.items():
        split_key(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name}[{key!r}] must be a finite number, got {value!r}")
        if non_negative and value < 0:
            raise ValueError(f"{name}[{key!r}] must be >= 0 (a drop), got {value}")
        checked[key] = float(value)
    return types.MappingProxyType(checked)


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """The gate's settings for one run.

    Args:
        floors: "metric" or "task/metric" -> the minimum the candidate must reach.
        max_drop: "metric" or "task/metric" -> how far below the champion the candidate may
            fall; metrics not named here may fall `default_max_drop`.
        default_max_drop: the allowed drop of every gated metric not in max_drop, >= 0.
        significance: "better" (the candidate's paired NDCG@5 difference on `significance_task` must
            be significantly positive), "not_worse" (must not be significantly negative) or
            "off".
        significance_task: the task whose paired difference the significance check reads;
            "": the funnel's last task.
        confidence: level of the paired confidence interval, e.g. 0.95.
        force_push: bless the candidate even when checks fail (recorded in the blessing).
        reference_check: the check against the no-training references (bm25, the zero-shot
            cosine of the candidate's encoder, the schema's relevance-score features), on
            every task, first runs included: "gate" (the candidate's NDCG@5 must not be
            significantly below the best reference's), "warn" (recorded and warned about,
            not blocking) or "off" (no references scored).
        reference_alpha: the level of that one-sided paired t-test: the check fails when its
            p-value is below this.
        tasks: the evaluated tasks in funnel order (the schema's); empty until the gate is
            given them with `for_tasks`, which checks the task names of the keys and of
            significance_task against them. Applying the gate needs them.

    Examples:
        >>> GateConfig(floors={"auc": 0.6, "purchase/auc": 0.55}, max_drop={"ndcg@5": 0.01})
    """

    floors: Mapping[str, float]
    max_drop: Mapping[str, float] = dataclasses.field(default_factory=dict)
    default_max_drop: float = 0.0
    significance: str = BETTER
    significance_task: str = ""
    confidence: float = 0.95
    force_push: bool = False
    reference_check: str = GATE
    reference_alpha: float = 0.05
    tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "floors", _thresholds("floors", self.floors, False))
        object.__setattr__(self, "max_drop", _thresholds("max_drop", self.max_drop, True))
        if not self.floors and not self.max_drop:
            raise ValueError("the gate needs at least one gated metric in floors or max_drop")
        drop = self.default_max_drop
        if isinstance(drop, bool) or not isinstance(drop, int | float) or not drop >= 0:
            raise ValueError(f"default_max_drop must be a finite number >= 0, got {drop!r}")
        if not math.isfinite(drop):
            raise ValueError(f"default_max_drop must be a finite number >= 0, got {drop!r}")
        if self.significance not in SIGNIFICANCE_MODES:
            raise ValueError(
                f"significance must be one of {SIGNIFICANCE_MODES}, got {self.significance!r}"
            )
        if not isinstance(self.significance_task, str) or "/" in self.significance_task:
            raise ValueError(
                f"significance_task must be a task's name or \"\" (the funnel's last task), "
                f"got {self.significance_task!r}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if not isinstance(self.force_push, bool):
            raise ValueError(f"force_push must be true or false, got {self.force_push!r}")
        if self.reference_check not in REFERENCE_MODES:
            raise ValueError(
                f"reference_check must be one of {REFERENCE_MODES}, got {self.reference_check!r}"
            )
        alpha = self.reference_alpha
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
            raise ValueError(f"reference_alpha must be in (0, 1), got {alpha!r}")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.tasks:
            self._check_tasks()

    def _check_tasks(self) -> None:
        tasks = self.tasks
        if not all(isinstance(t, str) and t for t in tasks) or len(set(tasks)) != len(tasks):
            raise ValueError(f"the gate's tasks must be distinct names, got {list(tasks)}")
        for name, keys in (("floors", self.floors), ("max_drop", self.max_drop)):
            for key in keys:
                task, _ = split_key(key)
                if task is not None and task not in tasks:
                    raise ValueError(
                        f"unknown task {task!r} in {name} key {key!r}: the schema's tasks are "
                        f"{list(tasks)}"
                    )
        if self.significance_task and self.significance_task not in tasks:
            raise ValueError(
                f'significance_task must be one of the schema\'s tasks {list(tasks)} or "" '
                f"(the last), got {self.significance_task!r}"
            )

    def for_tasks(self, tasks) -> GateConfig:
        """This gate for the evaluated `tasks` (funnel order): ValueError naming a task of a
        key or of significance_task that is not one of them."""
        return dataclasses.replace(self, tasks=tuple(tasks))

    def _require_tasks(self) -> tuple[str, ...]:
        if not self.tasks:
            raise ValueError(
                "the gate does not know the evaluated tasks yet: apply GateConfig.for_tasks("
                "<the schema's task names>) first"
            )
        return self.tasks

    @classmethod
    def from_parameters(
        cls,
        auc_floor: float,
        ndcg5_floor: float,
        metric_floors: Mapping,
        max_drop_vs_champion: float,
        max_drop_by_metric: Mapping,
        **settings,
    ) -> GateConfig:
        """The gate of the pipeline's parameters: `metric_floors` adds to and overrides the
        all-task floors `auc_floor` and `ndcg5_floor`; `max_drop_by_metric` overrides
        `max_drop_vs_champion` for the metrics it names. `settings`: the remaining fields."""
        floors = {"auc": auc_floor, PAIRED_METRIC: ndcg5_floor, **metric_floors}
        return cls(
            floors=floors,
            max_drop=max_drop_by_metric,
            default_max_drop=max_drop_vs_champion,
            **settings,
        )

    def gated(self) -> tuple[str, ...]:
        """Every gated "task/metric", metric by metric in the order they were named."""
        metrics: dict[str, None] = {}
        for key in (*self.floors, *self.max_drop):
            metrics.setdefault(split_key(key)[1], None)
        keys = []
        for metric in metrics:
            for task in self._require_tasks():
                named = {f"{task}/{metric}", metric}
                if named & (set(self.floors) | set(self.max_drop)):
                    keys.append(f"{task}/{metric}")
        return tuple(keys)

    def floor(self, key: str) -> float | None:
        """The floor of "task/metric", or None when only the champion gates it."""
        _, metric = split_key(key)
        return self.floors.get(key, self.floors.get(metric))

    def allowed_drop(self, key: str) -> float:
        _, metric = split_key(key)
        return self.max_drop.get(key, self.max_drop.get(metric, float(self.default_max_drop)))

    @property
    def main_task(self) -> str:
        """The task of the significance check: significance_task, or the funnel's last."""
        return self.significance_task or self._require_tasks()[-1]

    @property
    def paired_key(self) -> str:
        return f"{self.main_task}/{PAIRED_METRIC}"

    def to_dict(self) -> dict:
        """Settings as recorded in the blessing, resolved per "task/metric"."""
        gated = self.gated()
        return {
            "floors": {k: self.floor(k) for k in gated if self.floor(k) is not None},
            "max_drop_vs_champion": {k: self.allowed_drop(k) for k in gated},
            "significance": self.significance,
            "significance_metric": self.paired_key,
            "confidence": self.confidence,
            "force_push": self.force_push,
            "reference_check": self.reference_check,
            "reference_alpha": self.reference_alpha,
        }
