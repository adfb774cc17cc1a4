"""The multi-node train step's parts that need no cluster: TF_CONFIG from the command line,
the TrainJob it submits, the job's state as the step reports it, and the watch that fails the
step when the job fails. (k8s/trainer's manifests: tests/k8s/test_trainer_manifests.py; the
processes training together for real: test_distribute.py.)"""

import dataclasses
import io
import json
import threading

import pytest
from click.testing import CliRunner

from components.train import multiworker as mw
from components.train import step
from components.train.__main__ import main as train_cli
from components.train.config import TrainConfig
from components.train.training import TrainResult
from contract.layout import TRAIN_INFO_FILE


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
    job = mw.trainjob("j", "img:1", 2, arguments, "nvidia.com/gpu", 4, deadline_seconds=3600)
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert "activeDeadlineSeconds" not in mw.trainjob("j", "img:1", 2, arguments)["spec"]
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


# The step as a supervisor: its chief as a child process, the cluster restarted on failure.


class Jobs:
    """TrainJobs kept in memory; the first `failing` of them read as Failed."""

    def __init__(self, failing=0):
        self.created, self.deleted, self.failing = [], [], failing

    def create(self, job):
        self.created.append(job)

    def get(self, name):
        if name in self.names[: self.failing]:
            return _status([{"type": "Failed", "status": "True", "reason": "FailedJobs"}])
        return _status(jobs=[{"active": 1}])

    def delete(self, name):
        self.deleted.append(name)

    @property
    def names(self):
        return [job["metadata"]["name"] for job in self.created]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


RESULT = TrainResult(
    epochs_run=4, best_epoch=3, best_val_loss=0.25, train_examples=384, eval_examples=64,
    seconds=9.5, history={"val_loss": [0.4, 0.3, 0.25, 0.26]}, replicas=2,
)  # fmt: skip


def _chiefs(outcomes, model_dir, clock, seconds=300.0):
    """A `launch` for the step: each chief it starts runs for `seconds` of the clock and ends
    as the next of `outcomes` says: an exit status and its reason, or "wait" (until killed);
    one that succeeds writes the model's train_info.json, as the real chief does."""
    outcomes, started = iter(outcomes), []

    class Chief:
        def __init__(self, arguments):
            self.arguments, self._killed = arguments, threading.Event()
            started.append(self)

        def run(self):
            clock.now += seconds
            outcome = next(outcomes)
            if outcome == "wait":
                assert self._killed.wait(10), "the chief was not stopped"
                return -9, ""
            if outcome[0] == 0:
                info = {"config": {}, "result": dataclasses.asdict(RESULT)}
                (model_dir / TRAIN_INFO_FILE).write_text(json.dumps(info))
            return outcome

        def kill(self):
            self._killed.set()

    return Chief, started


def _supervise(tmp_path, monkeypatch, outcomes, jobs, **kwargs):
    monkeypatch.setattr(mw, "STAGING_ROOT", str(tmp_path / "volume" / "train-jobs"))
    for name in ("transform", "transformed", "pretrained", "model"):
        (tmp_path / name).mkdir(exist_ok=True)
    clock = Clock()
    launch, chiefs = _chiefs(outcomes, tmp_path / "model", clock)
    config = TrainConfig(backup_dir="/mnt/mlpr/checkpoints/train-abc", hang_seconds=60.0)
    paths = [str(tmp_path / n) for n in ("transform", "transformed", "pretrained", "model")]
    result = step._train_with_workers(
        *paths, config, {"batch_size": 64}, 3, "nvidia.com/gpu", 1, jobs=jobs,
        environ={mw.POD_IP_ENV: "10.0.0.5"}, launch=launch, clock=clock, watch_every=0.01,
        **kwargs,
    )  # fmt: skip
    return result, chiefs


LOST = (
    "training failed on CollectiveAllReduceStrategy: 2 replica(s), chief 0 of 3 workers: "
    "UnavailableError: Collective ops is aborted by: Socket closed"
)


def test_the_step_restarts_its_cluster_and_every_process_resumes_from_the_backup(
    tmp_path, monkeypatch, capsys
):
    jobs = Jobs()
    result, chiefs = _supervise(
        tmp_path, monkeypatch, [(1, LOST), (0, "")], jobs, max_restarts=2, deadline_seconds=1000
    )
    assert result == RESULT  # the chief's, read back from the model it wrote
    first, second = jobs.names
    assert first != second and jobs.deleted == [first, second]  # the failed one still ran
    # Each TrainJob gets what is left of the deadline; both go on from the same backup.
    deadlines = [job["spec"]["activeDeadlineSeconds"] for job in jobs.created]
    assert deadlines == [1000, 700]
    for job, chief in zip(jobs.created, chiefs, strict=True):
        worker = train_cli.make_context("w", list(job["spec"]["trainer"]["args"])).params
        own = train_cli.make_context("c", chief.arguments).params
        assert own["task_type"] == "chief" and worker["task_type"] == "worker"
        assert own["chief_address"] == worker["chief_address"] == f"10.0.0.5:{mw.PORT}"
        name = job["metadata"]["name"]
        assert own["worker_addresses"] == ",".join(mw.worker_addresses(name, 2))
        assert own["backup_dir"] == worker["backup_dir"] == "/mnt/mlpr/checkpoints/train-abc"
        assert own["hang_seconds"] == worker["hang_seconds"] == 60.0
        assert own["model_dir"] == str(tmp_path / "model") and own["batch_size"] == 64
    out = capsys.readouterr().out
    assert f"training failed ({LOST}); restart 1 of 2: a new TrainJob" in out
    assert not (tmp_path / "volume" / "train-jobs" / first).exists()  # the staged inputs


def test_the_step_gives_up_after_its_restarts_with_the_last_reason(tmp_path, monkeypatch):
    jobs = Jobs()
    with pytest.raises(RuntimeError) as error:
        _supervise(tmp_path, monkeypatch, [(1, LOST), (75, "hung")], jobs, max_restarts=1)
    assert str(error.value) == (
        "multi-node training failed 2 time(s) (train_max_restarts 1); last: hung"
    )
    assert jobs.deleted == jobs.names and len(jobs.names) == 2
    assert all("activeDeadlineSeconds" not in job["spec"] for job in jobs.created)


def test_a_failed_trainjob_stops_the_chief_and_is_kept_for_its_logs(tmp_path, monkeypatch, capsys):
    jobs = Jobs(failing=1)
    # The first chief waits for its workers until the watch of the TrainJob stops it.
    _supervise(tmp_path, monkeypatch, ["wait", (0, "")], jobs, max_restarts=1)
    first, second = jobs.names
    assert jobs.deleted == [second]  # the failed one is kept
    assert f"training failed (TrainJob {first} failed: FailedJobs); restart 1 of 1" in (
        capsys.readouterr().out
    )


def test_the_deadline_ends_the_restarts(tmp_path, monkeypatch):
    jobs = Jobs()
    with pytest.raises(RuntimeError, match=r"ran out of train_deadline_seconds \(250 s\)") as e:
        _supervise(tmp_path, monkeypatch, [(1, LOST)], jobs, max_restarts=3, deadline_seconds=250)
    assert "after 1 attempt(s); last: " + LOST in str(e.value)
    assert len(jobs.names) == 1


def test_several_workers_back_up_on_the_volume_they_share(tmp_path, monkeypatch):
    settings = dict(
        architecture="mlpr", encoder_preset="tiny", fine_tune_layers="0", text_cache_dir="",
        max_epochs=2, batch_size=8, learning_rate=1e-3, seed=0, train_workers=2,
    )  # fmt: skip
    paths = [str(tmp_path)] * 4
    with pytest.raises(RuntimeError, match="MLPR_POD_IP"):  # a local run: said first
        step.train_step(*paths, {}, None, checkpoint_root="/data/ckpt", **settings)
    monkeypatch.setenv(mw.POD_IP_ENV, "10.0.0.5")
    with pytest.raises(ValueError, match=r"checkpoint_root under /mnt/mlpr/ .*got '/data/ckpt'"):
        step.train_step(*paths, {}, None, checkpoint_root="/data/ckpt", **settings)


def test_the_chief_child_passes_its_output_on_and_names_its_failure(tmp_path):
    out = io.StringIO()
    missing = str(tmp_path / "missing")
    arguments = ["--transform-dir", missing, "--transformed-dir", missing, "--model-dir", missing]
    code, reason = mw.TrainProcess(arguments, out=out).run()
    assert code == 1
    assert reason.startswith("training failed on _DefaultDistributionStrategy"), reason
    assert reason in out.getvalue() and "Traceback" in out.getvalue()
    stopped = mw.TrainProcess(arguments)
    stopped.kill()  # the TrainJob failed before the chief started
    assert stopped.run() == (-9, "stopped before it started")
