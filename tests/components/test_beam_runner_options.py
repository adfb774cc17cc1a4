"""Ingest and transform scale by runner options only: the same Beam graphs are built for
Flink and Spark from `beam_pipeline_args` (constructed, not run: no cluster here). Without a
runner they run locally on one worker per core (`components/beam_runner.py`), which Beam's
own options override."""

import os
import shlex
import sys

import pytest
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SparkRunnerOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from components import beam_runner
from components.beam_runner import local_cores, local_workers, make_pipeline
from components.ingest import demo_data, job, sources
from components.lifeline import RUNNER_PIDS_ENV
from components.transform.transform import build_transform
from contract import schema as S

MIB, GIB = 1 << 20, 1 << 30

FLINK = ["--runner=FlinkRunner", "--flink_master=flink-jobmanager:8081", "--parallelism=16"]
SPARK = ["--runner=SparkRunner", "--spark_master_url=spark://spark-master:7077"]


def _transform_names(pipeline) -> set[str]:
    proto = pipeline.to_runner_api()
    return {t.unique_name for t in proto.components.transforms.values()}


def _local(pipeline) -> tuple[int, str]:
    assert isinstance(pipeline.runner, FnApiRunner)  # never DirectRunner: it fetches Prism
    direct = pipeline.options.view_as(DirectOptions)
    return direct.direct_num_workers, direct.direct_running_mode


def test_without_a_runner_the_job_runs_locally_on_every_core():
    assert _local(make_pipeline([])) == (local_cores(), "in_memory")
    assert _local(make_pipeline([], workers=1)) == (1, "in_memory")
    assert _local(make_pipeline([], workers=3)) == (3, "in_memory")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--direct_num_workers=1"], (1, "in_memory")),
        (["--direct_num_workers", "4"], (4, "in_memory")),
        (["--direct_num_workers=0"], (None, "in_memory")),  # Beam's 0: one per core
        (["--direct_running_mode=in_memory"], (1, "in_memory")),
        (["--direct_running_mode=multi_processing"], (3, "multi_processing")),
        (
            ["--direct_running_mode=multi_threading", "--direct_num_workers=2"],
            (2, "multi_threading"),
        ),
    ],
)
def test_beam_options_override_the_local_workers(args, expected):
    count, mode = expected
    assert _local(make_pipeline(args, workers=3)) == (count or local_cores(), mode)


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        make_pipeline([], workers=0)


def test_local_cores_count_the_cores_this_process_may_use():
    assert 1 <= local_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("sizes", "cores", "idle", "memory", "expected"),
    [
        ([64 * MIB] * 4, 8, 8, 64 * GIB, 4),  # one per file
        ([64 * MIB] * 4, 2, 8, 64 * GIB, 2),  # one per core
        ([64 * MIB] * 4, 8, 3, 64 * GIB, 3),  # one per idle core
        ([64 * MIB] * 4, 2, 0, 64 * GIB, 1),  # other jobs hold the cores: no worker would gain
        ([200 * MIB], 8, 8, 64 * GIB, 1),  # one file: one worker reads it
        ([MIB] * 8, 8, 8, 64 * GIB, 1),  # small: one worker's start costs more than it saves
        ([10 * MIB] * 8, 8, 8, 64 * GIB, 80 // 16),  # one per 16 MiB
        ([64 * MIB] * 8, 8, 8, 3 * GIB, 3),  # what the memory holds at 1 GiB each
        ([64 * MIB] * 8, 8, 8, GIB // 2, 1),
        ([], 8, 8, 64 * GIB, 1),
    ],
)
def test_local_workers_one_per_idle_core_file_share_of_the_input_and_memory(
    sizes, cores, idle, memory, expected
):
    got = local_workers(
        sizes, worker_bytes=GIB, min_bytes=16 * MIB, cores=cores, idle=idle, memory=memory
    )
    assert got == expected


def test_idle_cores_are_the_cores_less_the_load():
    cores, load = os.cpu_count(), os.getloadavg()[0]
    assert max(0, round(cores - load) - 1) <= beam_runner.idle_cores() <= cores


def test_local_workers_checks_its_thresholds():
    with pytest.raises(ValueError, match="must be at least 1, got 0 and 1"):
        local_workers([MIB], worker_bytes=1, min_bytes=0)


def test_local_memory_is_what_the_machine_and_its_cgroup_have_left():
    with open("/proc/meminfo", encoding="ascii") as f:
        available = next(int(line.split()[1]) * 1024 for line in f if "MemAvailable" in line)
    assert 0 < beam_runner.local_memory() <= available * 1.1  # it moves between the reads


def test_the_worker_command_follows_this_process_with_the_project_first():
    words = shlex.split(beam_runner.worker_command())
    follow, path = words[0], words[1]
    assert follow.startswith(f"{RUNNER_PIDS_ENV}=")
    assert follow.split("=", 1)[1].split(",")[-1] == str(os.getpid())
    root = os.path.dirname(os.path.dirname(os.path.abspath(beam_runner.__file__)))
    assert (
        path.startswith("PYTHONPATH=") and path[len("PYTHONPATH=") :].split(os.pathsep)[0] == root
    )
    assert words[2:] == ["exec", sys.executable, "-m", "components.beam_worker"]


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
