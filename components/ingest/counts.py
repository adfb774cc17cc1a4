"""What ingest read, kept, filtered and dead-lettered: the `counts.json` of its output.

The Beam job emits one event name per outcome (see the `*_EVENT` names) and counts them with a
combiner, so the counts are data that any runner produces; `IngestCounts.from_events` turns
the counted events into this record.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from components.ingest import errors
from contract import schema as S

ROWS_READ_EVENT = "rows_read"
KEPT_EVENT = "rows_kept"
FILTERED_EVENT = "rows_filtered_low_impressions"
CLIPPED_EVENT = "funnel_clipped"
_DEAD_LETTER_PREFIX = "dead_letter:"
_SPLIT_ROWS_PREFIX = "split_rows:"
_SPLIT_QUERIES_PREFIX = "split_queries:"


def dead_letter_event(reason: str) -> str:
    return _DEAD_LETTER_PREFIX + reason


def split_rows_event(split: str) -> str:
    return _SPLIT_ROWS_PREFIX + split


def split_queries_event(split: str) -> str:
    return _SPLIT_QUERIES_PREFIX + split


@dataclasses.dataclass(frozen=True)
class SplitCounts:
    """Rows and distinct (normalised) queries written to one split."""

    rows: int
    queries: int


@dataclasses.dataclass(frozen=True)
class IngestCounts:
    """The outcome of one ingest run.

    Every row read is exactly one of kept, filtered (impressions <= MIN_IMPRESSIONS_EXCLUSIVE)
    or dead-lettered: rows_read == rows_kept + rows_filtered_low_impressions + rows_dead_letter.
    `funnel_clipped` counts rows whose funnel counts were clipped (funnel_policy "clip"),
    whether they were then kept or filtered. `dead_letter_by_reason` has every reason of
    `errors.REASONS`, zero included; `splits` has every split of `schema.SPLITS`.
    """

    rows_read: int
    rows_kept: int
    rows_filtered_low_impressions: int
    rows_dead_letter: int
    dead_letter_by_reason: Mapping[str, int]
    funnel_clipped: int
    splits: Mapping[str, SplitCounts]

    def __post_init__(self) -> None:
        accounted = self.rows_kept + self.rows_filtered_low_impressions + self.rows_dead_letter
        if self.rows_read != accounted:
            raise ValueError(
                f"ingest lost rows: read {self.rows_read} but kept {self.rows_kept} + filtered "
                f"{self.rows_filtered_low_impressions} + dead-lettered {self.rows_dead_letter}"
            )
        if sum(self.dead_letter_by_reason.values()) != self.rows_dead_letter:
            raise ValueError(
                f"dead-letter reasons {dict(self.dead_letter_by_reason)} do not add up to "
                f"{self.rows_dead_letter}"
            )
        split_rows = sum(s.rows for s in self.splits.values())
        if split_rows != self.rows_kept:
            raise ValueError(f"splits hold {split_rows} rows but {self.rows_kept} were kept")

    @classmethod
    def from_events(cls, events: Mapping[str, int]) -> IngestCounts:
        """Build the counts from {event name: count} as counted by the Beam job."""
        known = {ROWS_READ_EVENT, KEPT_EVENT, FILTERED_EVENT, CLIPPED_EVENT}
        known |= {dead_letter_event(r) for r in errors.REASONS}
        known |= {split_rows_event(s) for s in S.SPLITS}
        known |= {split_queries_event(s) for s in S.SPLITS}
        unknown = sorted(set(events) - known)
        if unknown:
            raise ValueError(f"unknown ingest events {unknown}")
        by_reason = {r: int(events.get(dead_letter_event(r), 0)) for r in errors.REASONS}
        return cls(
            rows_read=int(events.get(ROWS_READ_EVENT, 0)),
            rows_kept=int(events.get(KEPT_EVENT, 0)),
            rows_filtered_low_impressions=int(events.get(FILTERED_EVENT, 0)),
            rows_dead_letter=sum(by_reason.values()),
            dead_letter_by_reason=by_reason,
            funnel_clipped=int(events.get(CLIPPED_EVENT, 0)),
            splits={
                s: SplitCounts(
                    rows=int(events.get(split_rows_event(s), 0)),
                    queries=int(events.get(split_queries_event(s), 0)),
                )
                for s in S.SPLITS
            },
        )

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["dead_letter_by_reason"] = dict(self.dead_letter_by_reason)
        data["splits"] = {s: dataclasses.asdict(c) for s, c in self.splits.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping) -> IngestCounts:
        fields = dict(data)
        fields["splits"] = {s: SplitCounts(**c) for s, c in data["splits"].items()}
        fields["dead_letter_by_reason"] = dict(data["dead_letter_by_reason"])
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str) -> IngestCounts:
        return cls.from_dict(json.loads(text))

    def summary(self) -> str:
        """A few human-readable lines (the CLI prints them)."""
        lines = [
            f"read {self.rows_read} rows: kept {self.rows_kept}, filtered (impressions <= "
            f"{S.MIN_IMPRESSIONS_EXCLUSIVE}) {self.rows_filtered_low_impressions}, "
            f"dead-lettered {self.rows_dead_letter}"
        ]
        reasons = [f"{r} {n}" for r, n in self.dead_letter_by_reason.items() if n]
        if reasons:
            lines.append(f"dead-letter reasons: {', '.join(reasons)}")
        if self.funnel_clipped:
            lines.append(f"funnel clipped: {self.funnel_clipped}")
        lines.append(
            "splits: "
            + ", ".join(f"{s} {c.rows} rows / {c.queries} queries" for s, c in self.splits.items())
        )
        return "\n".join(lines)
