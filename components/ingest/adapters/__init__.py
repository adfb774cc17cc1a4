"""Adapters: public datasets -> MLPR's raw engagement log (and its schema).

Each adapter is usable from the CLI (`python -m components.ingest.adapters <name> ...`) and as
the pipeline's input: `input_data="<name>:<path>"` (e.g. `homedepot:/data/train.csv.zip`)
makes the ingest step run the adapter on <path> first, with its schema unless `schema_uri` is
set.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import pandas as pd

from contract import schema as S


@dataclasses.dataclass(frozen=True)
class Adapter:
    """How one dataset becomes the raw log: `convert(path, seed)` -> the log; its schema."""

    name: str
    convert: Callable[[str, int], pd.DataFrame]
    schema: S.RawSchema
    description: str


def _homedepot(path: str, seed: int) -> pd.DataFrame:
    from components.ingest.adapters import homedepot

    return homedepot.simulate(homedepot.read_source(path), seed=seed)


def _esci(path: str, seed: int) -> pd.DataFrame:
    from components.ingest.adapters import esci

    return esci.simulate(esci.read_source(path), seed=seed)


def _adapters() -> dict[str, Adapter]:
    from components.ingest.adapters import click_model

    return {
        "homedepot": Adapter(
            "homedepot",
            _homedepot,
            click_model.SCHEMA,
            "Home Depot Product Search Relevance train.csv(.zip), engagement simulated",
        ),
        "esci": Adapter(
            "esci",
            _esci,
            click_model.SCHEMA,
            "Amazon Shopping Queries (ESCI) examples joined with products, engagement simulated",
        ),
    }


ADAPTERS = _adapters()


def parse_input(input_data: str) -> tuple[Adapter | None, str]:
    """(the adapter, its source path) for "<adapter>:<path>", else (None, input_data).
    URIs such as gs://bucket/x are not adapter names and pass through."""
    name, sep, rest = input_data.partition(":")
    if sep and not rest.startswith("//") and name in ADAPTERS:
        if not rest:
            raise ValueError(f"input_data {input_data!r} names the {name} adapter but no file")
        return ADAPTERS[name], rest
    return None, input_data


def materialize(adapter: Adapter, source: str, out_dir: str, seed: int = 0) -> tuple[str, str]:
    """Run `adapter` on `source`; write the log (CSV, UTF-8) and its schema JSON into
    `out_dir`; return (log path, schema path)."""
    if not os.path.exists(source):
        raise ValueError(f"{adapter.name} adapter: input file {source!r} does not exist")
    try:
        log = adapter.convert(source, seed)
    except (OSError, KeyError) as err:
        raise ValueError(f"{adapter.name} adapter could not read {source!r}: {err}") from err
    log_path = os.path.join(out_dir, f"{adapter.name}.csv")
    schema_path = os.path.join(out_dir, f"{adapter.name}.schema.json")
    write_log(log, adapter.schema, log_path, schema_path)
    return log_path, schema_path


def write_log(log: pd.DataFrame, schema: S.RawSchema, log_path: str, schema_path: str) -> None:
    """Write an adapter's log (CSV, JSONL or Parquet by extension) and its schema JSON."""
    from components.ingest import demo_data

    demo_data.write(log, log_path)
    os.makedirs(os.path.dirname(os.path.abspath(schema_path)), exist_ok=True)
    with open(schema_path, "w", encoding="utf-8") as f:
        f.write(schema.to_json())
