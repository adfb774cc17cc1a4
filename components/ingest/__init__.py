"""Ingest: read the raw engagement log, validate, filter, split by query, write Parquet.

`run_ingest` (in `job`) is the entry point; `demo_data` generates the embedded demo shop.
The names below are imported lazily, so `components.ingest.component` stays light to import.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "run_ingest": "components.ingest.job",
    "read_dead_letters": "components.ingest.job",
    "IngestCounts": "components.ingest.counts",
    "SplitCounts": "components.ingest.counts",
    "IngestError": "components.ingest.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'components.ingest' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
