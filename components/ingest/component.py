"""The kfp component of the ingest step; the work is done by `components.ingest.job`.

Only kfp (and the image name) is imported here: kfp serialises the function's source alone,
so everything else is imported inside the function body.
"""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest(
    examples: Output[Dataset],
    input_data: str = "",
    input_format: str = "auto",
    input_encoding: str = "utf-8",
    schema_uri: str = "",
    demo_queries: int = 600,
    seed: int = 0,
    funnel_policy: str = "reject",
    max_bad_share: float = 0.1,
    beam_pipeline_args: list = [],  # noqa: B006 (kfp parameters declare defaults this way)
):
    """Ingest a raw search engagement log into train/eval/test TFRecords.

    Reads one row per (query, product) pair from CSV, JSONL or Parquet, validates every row
    against the raw schema, drops pairs with 5 or fewer impressions, and splits 80/10/10 by a
    stable hash of the query, so no query is in two splits. Kept rows become tf.Examples with
    the product text, ranking features, funnel counts and the click / add-to-cart / purchase
    labels, in gzip TFRecords under train/, eval/ and test/. Rows that break the schema are
    written to dead_letter/ as JSON lines with the file, row, reason, field and a message.
    counts.json (also in this artifact's metadata) gives rows read, kept, filtered and
    dead-lettered by reason, and rows and queries per split; schema.json records the schema.

    Args:
        examples: Output directory: train/, eval/, test/, dead_letter/, counts.json, schema.json,
            statistics.json and statistics.md (per-split statistics, drift against train).
        input_data: Path or glob of the raw log (gs:// works). Empty: generate the demo shop.
            "<adapter>:<path>" (homedepot:, esci:): convert a public dataset first, with the
            adapter's schema unless schema_uri is set (components/ingest/adapters).
        input_format: auto (by file extension), csv, jsonl or parquet.
        input_encoding: Text encoding of CSV/JSONL input, e.g. utf-8 or iso-8859-1.
        schema_uri: RawSchema JSON file declaring the ranking features. Empty: the demo schema.
        demo_queries: Number of queries of the generated demo log (when input_data is empty).
        seed: Random seed of the generated demo log.
        funnel_policy: reject (dead-letter) or clip (cap at the stage above) funnel violations.
        max_bad_share: the step fails, with counts by reason and example rows, when more than
            this share of the rows read is dead-lettered.
        beam_pipeline_args: Beam pipeline options, e.g. ["--runner=DataflowRunner", ...].
    """
    import os

    from components.ingest import job
    from components.ingest.resolve import resolve_input

    os.makedirs(examples.path, exist_ok=True)
    try:
        given = resolve_input(
            input_data,
            input_format,
            input_encoding,
            schema_uri,
            work_dir=examples.path,
            demo_queries=demo_queries,
            seed=seed,
        )
        if given.note:
            print(f"ingest: {given.note}")
        counts = job.run_ingest(
            input_pattern=given.pattern,
            output_dir=examples.path,
            schema=given.schema,
            input_format=given.input_format,
            encoding=given.encoding,
            funnel_policy=funnel_policy,
            beam_args=list(beam_pipeline_args),
            max_bad_share=max_bad_share,
        )
    except ValueError as err:  # IngestError and schema errors: the message says it all
        raise SystemExit(f"ingest: error: {err}") from None
    from components.ingest import statistics

    drift = statistics.load(examples.path)["drift"]
    examples.metadata["drift_findings"] = len(drift)
    summary = counts.to_dict()
    examples.metadata.update(
        {key: value for key, value in summary.items() if key != "splits"}
        | {
            f"{split}_{key}": value
            for split, c in summary["splits"].items()
            for key, value in c.items()
        }
    )
