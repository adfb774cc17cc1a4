"""Ingest and transform scale by runner options only: the same Beam graphs are built for
Flink and Spark from `beam_pipeline_args` (constructed, not run: no cluster here)."""

import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SparkRunnerOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from components.beam_runner import make_pipeline
from components.ingest import demo_data, job, sources
from components.transform.transform import build_transform
from contract import schema as S

FLINK = ["--runner=FlinkRunner", "--flink_master=flink-jobmanager:8081", "--parallelism=16"]
SPARK = ["--runner=SparkRunner", "--spark_master_url=spark://spark-master:7077"]


def _transform_names(pipeline) -> set[str]:
    proto = pipeline.to_runner_api()
    return {t.unique_name for t in proto.components.transforms.values()}


def test_without_a_runner_the_job_runs_in_process():
    assert isinstance(make_pipeline([]).runner, FnApiRunner)


def test_ingest_graph_is_built_for_flink_with_its_options(tmp_path):
    source = demo_data.write(demo_data.generate(5, seed=0), tmp_path / "log.csv")
    inputs = sources.resolve_inputs(str(source), "auto", "utf-8", S.DEMO_SCHEMA)
    pipeline = make_pipeline(FLINK)
    assert type(pipeline.runner).__name__ == "FlinkRunner"
    options = pipeline.options.view_as(FlinkRunnerOptions)
    assert options.flink_master == "flink-jobmanager:8081" and options.parallelism == 16
    job.build_pipeline(pipeline, inputs, str(tmp_path / "out"), S.DEMO_SCHEMA, "utf-8", "reject")
    names = _transform_names(pipeline)
    for step in (
        "ReadRows",
        "ReadRows/Read",
        "FindDuplicatePairs/FirstPerPair",
        "ValidateRows/Validate",
        "SplitStatistics",
        "WriteDeadLetter",
    ):
        assert step in names
    assert any(n.startswith("WriteSplits/Write[train]") for n in names)


def test_transform_graph_is_built_for_spark(tmp_path):
    source = demo_data.write(demo_data.generate(20, seed=0), tmp_path / "log.csv")
    job.run_ingest(str(source), str(tmp_path / "examples"), S.DEMO_SCHEMA)
    pipeline = make_pipeline(SPARK)
    assert type(pipeline.runner).__name__ == "SparkRunner"
    assert (
        pipeline.options.view_as(SparkRunnerOptions).spark_master_url == "spark://spark-master:7077"
    )
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        build_transform(
            pipeline,
            str(tmp_path / "examples"),
            str(tmp_path / "tft"),
            str(tmp_path / "tx"),
            S.DEMO_SCHEMA,
        )
    names = _transform_names(pipeline)
    assert {"Analyze", "WriteTransformFn", "Writetrain", "Writeeval", "Writetest"} <= names


def test_dataflow_options_parse_as_documented():
    # Constructing a Dataflow pipeline validates the bucket over the network, so only the
    # options of the command in docs/scaling.md are checked here.
    options = PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--project=my-project",
            "--region=europe-west1",
            "--temp_location=gs://my-bucket/tmp",
            "--max_num_workers=20",
        ]
    )
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = options.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region, cloud.temp_location) == (
        "my-project",
        "europe-west1",
        "gs://my-bucket/tmp",
    )
    assert options.view_as(WorkerOptions).max_num_workers == 20
