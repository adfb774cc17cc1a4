"""What the ingest step reads, resolved in one place for the step and for the local runner's
preflight check: the demo shop, a public dataset through its adapter, or the user's files,
with the schema that goes with them."""

from __future__ import annotations

import dataclasses
import os

from contract import schema as S


@dataclasses.dataclass(frozen=True)
class IngestInput:
    """The files to ingest and how to read them. `note` says what was prepared, if anything."""

    pattern: str
    schema: S.RawSchema
    input_format: str
    encoding: str
    note: str | None = None


# The folders of the work directory where the input is prepared: the generated demo shop, a
# public dataset converted by its adapter.
DEMO_INPUT_DIR = "demo_input"
ADAPTER_INPUT_DIR = "adapter_input"


def resolve_input(
    input_data: str,
    input_format: str = "auto",
    input_encoding: str = "utf-8",
    schema_uri: str = "",
    work_dir: str | None = None,
    demo_queries: int = 600,
    seed: int = 0,
) -> IngestInput | None:
    """The ingest step's input. Raises ValueError (IngestError included) with a one-line
    reason when it cannot be used.

    With `work_dir`, the input is prepared there: the demo shop is generated (empty
    `input_data`), a "<adapter>:<path>" dataset converted. Without it (the preflight check
    before a run), nothing is written: the files and the schema are only checked, and None is
    returned for the demo shop."""
    from components.ingest import adapters, demo_data, sources

    if not input_data:
        if work_dir is None:
            return None
        path = os.path.join(work_dir, DEMO_INPUT_DIR, "demo.csv")
        demo_data.write(demo_data.generate(demo_queries, seed), path)
        return IngestInput(path, S.resolve_schema(schema_uri), "csv", "utf-8", None)
    adapter, path = adapters.parse_input(input_data)
    if adapter is not None:
        if not os.path.isfile(path):
            raise ValueError(f"{adapter.name} adapter: input file {path!r} does not exist")
        schema = S.resolve_schema(schema_uri) if schema_uri else adapter.schema
        if work_dir is None:
            return IngestInput(path, schema, "csv", "utf-8")
        log, schema_path = adapters.materialize(
            adapter, path, os.path.join(work_dir, ADAPTER_INPUT_DIR), seed
        )
        # What the adapter wrote: UTF-8 CSV, with its schema unless one was given.
        schema = S.resolve_schema(schema_uri or schema_path)
        return IngestInput(log, schema, "csv", "utf-8", f"{adapter.name} adapter wrote {log}")
    schema = S.resolve_schema(schema_uri)
    if work_dir is None:
        sources.resolve_inputs(input_data, input_format, input_encoding, schema)
    return IngestInput(input_data, schema, input_format, input_encoding)
