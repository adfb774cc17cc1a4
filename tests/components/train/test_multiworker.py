"""The multi-node train step's parts that need no cluster: TF_CONFIG from the command line,
the TrainJob it submits, the job's state as the step reports it, and the watch that fails the
step when the job fails. (k8s/trainer's manifests: tests/k8s/test_trainer_manifests.py; the
processes training together for real: test_distribute.py.)"""

import io
import json
import threading

import pytest
from click.testing import CliRunner

from components.train import multiworker as mw
from components.train import step
from components.train.__main__ import main as train_cli


def test_tf_config_names_the_chief_and_each_worker_in_order():
    config = json.loads(mw.tf_config("10.0.0.5:2222", ["a:2222", "b:2222"], "worker", 1))
    assert config == {
        "cluster": {"worker": ["a:2222", "b:2222"], "chief": ["10.0.0.5:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    assert "chief" not in json.loads(mw.tf_config("", ["a:1", "b:1"], "worker", 0))["cluster"]


def test_workers_are_addressed_by_their_jobset_host_names():
    name = mw.job_name()
    assert name.startswith("mlpr-train-") and len(name) <= 20
    assert mw.worker_addresses(name, 2) == [
        f"{name}-node-0-0.{name}:{mw.PORT}",
        f"{name}-node-0-1.{name}:{mw.PORT}",
    ]


def test_the_trainjob_runs_the_worker_cli_on_the_runtime_with_the_steps_accelerators():
    arguments = mw.worker_arguments(
        "/mnt/mlpr/train-jobs/j/transform",
        "/mnt/mlpr/train-jobs/j/transformed",
        "/mnt/mlpr/train-jobs/j/pretrained",
        "10.0.0.5:2222",
        mw.worker_addresses("j", 2),
        {
            "architecture": "mmoe",
            "batch_size": 64,
            "fine_tune_layers": "0",
            "loss_balancing": "dwa",
            "region_mask": True,
        },
    )
    job = mw.trainjob("j", "img:1", 2, arguments, "nvidia.com/gpu", 4)
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"] == {"name": mw.RUNTIME, "kind": "ClusterTrainingRuntime"}
    assert trainer["numNodes"] == 2 and trainer["image"] == "img:1"
    assert trainer["command"] == ["python", "-m", "components.train"]
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "4"}
    assert "resourcesPerNode" not in mw.trainjob("j", "img:1", 2, arguments)["spec"]["trainer"]
    # The worker CLI accepts every argument it is given, with the values meant.
    context = train_cli.make_context("components.train", list(trainer["args"]))
    params = context.params
    assert params["architecture"] == "mmoe" and params["batch_size"] == 64
    assert params["loss_balancing"] == "dwa" and params["region_mask"] is True
    assert params["chief_address"] == "10.0.0.5:2222"
    assert params["worker_addresses"].split(",") == mw.worker_addresses("j", 2)
    assert params["task_type"] == "worker"


def test_the_worker_index_comes_from_the_pods_environment(monkeypatch):
    monkeypatch.setenv(mw.INDEX_ENV, "3")
    context = train_cli.make_context(
        "components.train", ["--transform-dir", "t", "--transformed-dir", "x", "--model-dir", "m"]
    )
    assert context.params["task_index"] == 3


def test_the_cli_defaults_are_the_train_steps():
    """A worker given no setting trains with the pipeline's defaults (STEP_DEFAULTS), the
    TrainConfig of train_config()."""
    from components.train.config import STEP_DEFAULTS, train_config
    from components.train.step import SETTINGS, step_config

    args = ["--transform-dir", "t", "--transformed-dir", "x", "--model-dir", "m"]
    params = train_cli.make_context("components.train", args).params
    assert {name: params[name] for name in STEP_DEFAULTS} == dict(STEP_DEFAULTS)
    settings = {name: params[name] for name in SETTINGS}
    assert step_config(settings, params["encoder_preset"], "") == train_config()


def test_the_cli_refuses_two_clusters(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", mw.tf_config("", ["a:1", "b:1"], "worker", 0))
    args = ["--transform-dir", "t", "--transformed-dir", "x", "--model-dir", str(tmp_path)]
    result = CliRunner().invoke(train_cli, [*args, "--chief-address", "c:1"])
    assert result.exit_code == 2 and "not both" in result.output


def _status(conditions=(), jobs=()):
    return {"status": {"conditions": list(conditions), "jobsStatus": list(jobs)}}


def test_the_jobs_state_is_its_ending_condition_or_its_pods():
    assert mw.job_state({}) == ("Running", "waiting for its pods")
    running = _status(jobs=[{"name": "node", "active": 2, "ready": 1, "failed": 0}])
    assert mw.job_state(running) == ("Running", "active 2, ready 1")
    failed = _status(
        [
            {"type": "Created", "status": "True", "reason": "JobsCreationSucceeded"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "FailedJobs",
                "message": "jobset failed due to node-0 job failure",
            },
        ]
    )
    assert mw.job_state(failed) == (
        "Failed",
        "FailedJobs: jobset failed due to node-0 job failure",
    )
    not_yet = _status([{"type": "Complete", "status": "False", "reason": "x"}])
    assert mw.job_state(not_yet)[0] == "Running"


def test_the_watch_reports_each_change_and_fails_the_step_with_the_jobs_reason():
    states = iter(
        [
            _status(),
            _status(),
            _status(jobs=[{"active": 1}]),
            _status([{"type": "Failed", "status": "True", "reason": "FailedJobs"}]),
        ]
    )
    failures, out = [], io.StringIO()
    failed = threading.Event()

    def on_failure(reason):
        failures.append(reason)
        failed.set()

    watcher = mw.JobWatcher("j", lambda: next(states), on_failure, interval_s=0.01, out=out)
    watcher.start()
    assert failed.wait(10)
    watcher.stop()
    assert failures == ["TrainJob j failed: FailedJobs"]
    assert out.getvalue().splitlines() == [
        "TrainJob j: Running (waiting for its pods)",
        "TrainJob j: Running (active 1)",
        "TrainJob j: Failed (FailedJobs)",
    ]


def test_an_unreadable_job_is_reported_and_the_watch_goes_on():
    calls = iter(
        [RuntimeError("503 Service Unavailable"), _status([{"type": "Complete", "status": "True"}])]
    )

    def get_job():
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    out = io.StringIO()
    watcher = mw.JobWatcher("j", get_job, lambda reason: None, interval_s=0.01, out=out)
    assert watcher.poll()[0] == "Unknown"
    assert watcher.poll()[0] == "Complete"
    assert "could not be read: 503 Service Unavailable" in out.getvalue()


def test_staging_copies_the_inputs_onto_the_shared_volume(tmp_path):
    (tmp_path / "graph" / "sub").mkdir(parents=True)
    (tmp_path / "graph" / "sub" / "f.txt").write_text("x")
    copies = mw.stage({"transform": str(tmp_path / "graph")}, str(tmp_path / "volume" / "j"))
    assert (tmp_path / "volume" / "j" / "transform" / "sub" / "f.txt").read_text() == "x"
    assert copies == {"transform": str(tmp_path / "volume" / "j" / "transform")}


def test_several_workers_need_the_pod_ip_and_submit_nothing_without_it(tmp_path):
    class Jobs:
        created = []

        def create(self, job):
            self.created.append(job)

    with pytest.raises(RuntimeError, match="MLPR_POD_IP"):
        step._train_with_workers(
            str(tmp_path), str(tmp_path), str(tmp_path), str(tmp_path), None, {}, 2, "", 0,
            jobs=Jobs(), environ={},
        )  # fmt: skip
    assert Jobs.created == []
