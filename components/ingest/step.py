"""The ingest step: a raw search engagement log into train/eval/test Parquet splits.

Reads one row per (query, product) pair from CSV, JSONL or Parquet, validates every row
against the raw schema, drops pairs with 5 or fewer impressions, and splits 80/10/10 by a
stable hash of the query, so no query is in two splits. Kept rows, with the product text,
ranking features, funnel counts and the click / add-to-cart / purchase labels, are written
as typed Parquet files under train/, eval/ and test/ (`components.raw_splits`; tf.Examples
are made from them where needed: `python -m components.ingest.export`). Rows that break the
schema are written to dead_letter/ as JSON lines with the file, row, reason, field and a
message.
counts.json (also in the artifact's metadata) gives rows read, kept, filtered and
dead-lettered by reason, and rows and queries per split; schema.json records the schema;
statistics.json holds per-split statistics and the drift against train; statistics/ the same
in TensorFlow Data Validation's formats, with views (statistics.md, statistics.html).
When more than max_bad_share of the rows read is dead-lettered, the step fails with the
counts by reason and example rows, after writing everything.

What is read is resolved by `resolve.resolve_input` (the demo shop, a public dataset through
its adapter, or the user's files); the Beam job is `job.run_ingest`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import MutableMapping, Sequence

from components import disk_faults
from components.ingest import job, statistics
from components.ingest.resolve import ADAPTER_INPUT_DIR, DEMO_INPUT_DIR, resolve_input
from components.step_log import progress


def ingest_step(
    output_dir: str,
    metadata: MutableMapping,
    *,
    input_data: str,
    input_format: str,
    input_encoding: str,
    schema_uri: str,
    demo_queries: int,
    seed: int,
    funnel_policy: str,
    max_bad_share: float,
    beam_pipeline_args: Sequence[str],
    html_view: str = "",
) -> None:
    """Ingest `input_data` (empty: the generated demo shop) into `output_dir` and record the
    counts in `metadata`: every count of counts.json, the per-split ones as "<split>_<count>",
    and "drift_findings", the number of drift findings against the train split. `html_view`:
    a file to copy the statistics' HTML page to (the component's HTML output), if any.

    Unusable input (ValueError, IngestError included) exits with "ingest: error: <reason>". A
    write that fails for want of space or write access exits with "ingest: error: <reason>
    while writing <path>: ..." after removing what the step wrote (components/disk_faults.py);
    a retry once the volume is writable again gives what a run that never failed gives."""
    outputs = [output_dir, html_view] if html_view else [output_dir]

    def clear() -> list[str]:
        prepared = [os.path.join(output_dir, d) for d in (DEMO_INPUT_DIR, ADAPTER_INPUT_DIR)]
        return job.clear_outputs(output_dir) + disk_faults.remove(
            prepared + ([html_view] if html_view else [])
        )

    with disk_faults.reported("ingest", outputs, clear, job.write_stages(output_dir)):
        os.makedirs(output_dir, exist_ok=True)
        try:
            given = resolve_input(
                input_data,
                input_format,
                input_encoding,
                schema_uri,
                work_dir=output_dir,
                demo_queries=demo_queries,
                seed=seed,
            )
            if given.note:
                print(f"ingest: {given.note}")
            counts = job.run_ingest(
                input_pattern=given.pattern,
                output_dir=output_dir,
                schema=given.schema,
                input_format=given.input_format,
                encoding=given.encoding,
                funnel_policy=funnel_policy,
                beam_args=list(beam_pipeline_args),
                max_bad_share=max_bad_share,
            )
        except ValueError as err:  # IngestError and schema errors: the message says it all
            raise SystemExit(f"ingest: error: {err}") from None
        drift = statistics.load(output_dir)["drift"]
        if html_view:
            os.makedirs(os.path.dirname(html_view) or ".", exist_ok=True)
            shutil.copyfile(os.path.join(output_dir, statistics.HTML_FILE), html_view)
    metadata["drift_findings"] = len(drift)
    progress(
        f"kept {counts.rows_kept} of {counts.rows_read} rows "
        f"({counts.rows_dead_letter} dead-lettered); {len(drift)} drift finding(s)"
    )
    summary = counts.to_dict()
    metadata.update(
        {key: value for key, value in summary.items() if key != "splits"}
        | {
            f"{split}_{key}": value
            for split, c in summary["splits"].items()
            for key, value in c.items()
        }
    )
