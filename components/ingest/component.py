"""The kfp component of the ingest step; the work is done by `components.ingest.step`.

Only kfp (and the image name) is imported here: kfp serialises the function's source alone,
so everything else is imported inside the function body.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest(
    examples: Output[Dataset],
    statistics: Output[HTML],
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
    """Ingest a raw engagement log into train/eval/test Parquet splits; see
    components/ingest/step.py.

    Args:
        examples: train/, eval/, test/ (Parquet, typed by the schema), dead_letter/, counts.json, schema.json, statistics.json,
            statistics/ (TFDV's FeatureStats.pb per split, the drift as Anomalies), views.
        statistics: the statistics as one HTML page: rows, queries and label rates per split,
            the drift against train, every feature of every split with its histogram.
        input_data: Path or glob of the raw log (gs:// works). Empty: generate the demo shop.
            "<adapter>:<path>" (homedepot:, esci:): convert a public dataset first, with the
            adapter's schema unless schema_uri is set (components/ingest/adapters).
        input_format: auto (by file extension), csv, jsonl or parquet.
        input_encoding: Text encoding of CSV/JSONL input, e.g. utf-8 or iso-8859-1.
        schema_uri: RawSchema JSON file declaring the ranking features. Empty: the demo schema.
        demo_queries: Number of queries of the generated demo log (when input_data is empty).
        seed: Random seed of the generated demo log.
        funnel_policy: reject (dead-letter) or clip (cap at the stage above) funnel violations.
        max_bad_share: the step fails when more than this share of the rows read is dead-lettered.
        beam_pipeline_args: Beam pipeline options, e.g. ["--runner=DataflowRunner", ...].
    """
    from components.step_log import quiet

    quiet(tensorflow=False)  # ingest runs without TensorFlow
    from components.lifeline import follow_runner

    follow_runner()  # a local run's step ends with the run (components/lifeline.py)

    from components.ingest.step import ingest_step

    ingest_step(
        examples.path,
        examples.metadata,
        html_view=statistics.path,
        input_data=input_data,
        input_format=input_format,
        input_encoding=input_encoding,
        schema_uri=schema_uri,
        demo_queries=demo_queries,
        seed=seed,
        funnel_policy=funnel_policy,
        max_bad_share=max_bad_share,
        beam_pipeline_args=beam_pipeline_args,
    )
