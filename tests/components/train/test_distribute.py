"""Training on one device or many: the strategy each environment gets, and real runs under
MirroredStrategy (two logical CPUs standing in for two GPUs) and MultiWorkerMirroredStrategy
(two processes on 127.0.0.1 with TF_CONFIG) against one process with the same global batch."""

import json
import math
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from components.train import distribute
from components.train.__main__ import main as train_cli
from components.train.config import TrainConfig, train_config
from components.train.inputs import shuffled_epochs
from components.train.multiworker import INDEX_ENV
from components.train.training import run_training
from conftest import synthetic_splits, transformed_dataset
from contract import layout
from contract import schema as S
from model.losses import binary_crossentropy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
RUNNER = os.path.join(os.path.dirname(__file__), "distributed_run.py")

# Each replica's batch; two replicas make the global batch of the one-process reference,
# whose learning rate carries the sqrt(2) of distribute.learning_rate_scale.
REPLICA_BATCH = 32
LEARNING_RATE = 5e-3
SETTINGS = dict(
    architecture="mlpr",
    fine_tune_layers="0",
    encoder_preset="tiny",
    max_epochs=3,
    precision="float32",
    # Several workers choose the epoch on the eval loss (NDCG@5 is scored on one process):
    # every placement here does, so the histories compare key for key.
    select_on="val_loss",
    # Dropout draws its masks per replica, so it cannot match one device's draw over the
    # global batch; without it the runs differ by float rounding only.
    dropout=0.0,
    projection_dim=16,
    num_shared_experts=2,
    expert_units=(32, 16),
    tower_units=(8,),
)
# Epoch-by-epoch agreement with the one-process run. Losses: measured differences are
# below 1e-5 for the first epochs and 4e-4 after three (summation order in the all-reduce
# and in synchronized batch norm, which Adam's normalised steps carry on). AUCs over the
# 64 eval examples move in steps of one swapped pair (up to 0.0075 measured).
LOSS_TOLERANCE = 2e-3
AUC_TOLERANCE = 2e-2


def _cluster(tf_config: str):
    return distribute.parse_tf_config(tf_config)


def test_tf_config_names_the_chief_and_the_workers():
    assert _cluster("") is None and _cluster(None) is None
    one = {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}
    assert _cluster(json.dumps(one)) is None  # one task: no cluster to join
    two = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}
    second = _cluster(json.dumps(two))
    assert (second.workers, second.task_index, second.is_chief) == (2, 1, False)
    assert _cluster(json.dumps({**two, "task": {"type": "worker", "index": 0}})).is_chief
    with_chief = {
        "cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"]},
        "task": {"type": "worker", "index": 0},
    }
    worker = _cluster(json.dumps(with_chief))
    assert (worker.workers, worker.is_chief) == (3, False)
    assert _cluster(json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})).is_chief


@pytest.mark.parametrize(
    "text, named",
    [
        ("{", "not JSON"),
        ("[1]", "JSON object"),
        ('{"cluster": {"worker": ["a:1", "b:1"], "ps": ["p:1"]}, "task": {}}', "ps"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker"}}', "integer index"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "2"),
    ],
)
def test_a_malformed_tf_config_is_named(text, named):
    with pytest.raises(ValueError, match="TF_CONFIG") as error:
        _cluster(text)
    assert named in str(error.value)


def test_the_cli_reports_a_bad_tf_config_without_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    args = ["--transform-dir", str(tmp_path), "--transformed-dir", str(tmp_path)]
    result = CliRunner().invoke(train_cli, [*args, "--model-dir", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "TF_CONFIG is not JSON" in result.output and "Traceback" not in result.output


def test_one_device_gets_the_default_strategy_and_scales_nothing():
    where = distribute.placement(devices=[], environ={})
    assert (where.replicas, where.workers, where.is_chief) == (1, 1, True)
    assert distribute.learning_rate_scale(1) == 1.0
    assert distribute.learning_rate_scale(4) == 2.0


def test_precision_follows_the_device(monkeypatch):
    assert distribute.resolve_precision("auto", gpus=[]) == "float32"
    assert distribute.resolve_precision("mixed_float16", gpus=[]) == "mixed_float16"
    capabilities = {"ampere": (8, 0), "volta": (7, 0)}
    monkeypatch.setattr(
        tf.config.experimental,
        "get_device_details",
        lambda gpu: {"compute_capability": capabilities[gpu]},
    )
    assert distribute.resolve_precision("auto", gpus=["ampere"]) == "mixed_bfloat16"
    assert distribute.resolve_precision("auto", gpus=["ampere", "volta"]) == "mixed_float16"
    with pytest.raises(ValueError, match="precision"):
        distribute.resolve_precision("bfloat16", gpus=[])
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")


def test_only_the_chief_writes_its_output_dir(tmp_path):
    chief = distribute.Placement(tf.distribute.get_strategy())
    with distribute.output_dir_for(str(tmp_path / "out"), chief) as path:
        assert path == str(tmp_path / "out")
    cluster = distribute.Cluster("worker", 1, 2)
    other = distribute.Placement(tf.distribute.get_strategy(), cluster)
    with distribute.output_dir_for(str(tmp_path / "out"), other) as path:
        assert path != str(tmp_path / "out")
        open(os.path.join(path, "model.keras"), "w").close()
    assert not os.path.exists(path)


def test_each_epoch_is_a_whole_pass_in_an_order_of_its_own():
    data = tf.data.Dataset.range(10)
    batches = [b.numpy().tolist() for b in shuffled_epochs(data, 4, seed=3, epochs=3, buffer=10)]
    assert [len(b) for b in batches] == [4, 4, 2] * 3  # no batch straddles two passes
    passes = [sum(batches[i : i + 3], []) for i in (0, 3, 6)]
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert passes[0] != passes[1] != passes[2]
    again = [b.numpy().tolist() for b in shuffled_epochs(data, 4, seed=3, epochs=3, buffer=10)]
    assert again == batches


def test_an_empty_share_of_a_batch_has_a_finite_loss():
    empty = tf.zeros((0, 1))
    assert float(binary_crossentropy(empty, empty)) == 0.0
    assert float(binary_crossentropy(tf.ones((2, 1)), tf.fill((2, 1), 0.5))) == pytest.approx(
        math.log(2.0), rel=1e-6
    )


def test_a_lost_worker_is_named_in_one_line():
    message = (
        "Graph execution error:\n\nDetected at node adam_w/CollectiveReduceV2 defined at:\n"
        '  File "loop.py", line 91, in train_on\n\n'
        "Collective ops is aborted by: Socket closed\n"
        "Additional GRPC error information from remote target /job:worker/replica:0/task:1 "
        "while calling /tensorflow.WorkerService/RecvBuf:\n"
        ':UNKNOWN:Error received from peer  {grpc_status:14, grpc_message:"Socket closed"}\n'
        "\t [[{{node adam_w/CollectiveReduceV2}}]]"
    )
    reason = distribute.failure_reason(tf.errors.UnavailableError(None, None, message))
    assert reason == (
        "UnavailableError: Collective ops is aborted by: Socket closed "
        "(from /job:worker/replica:0/task:1)"
    )
    assert distribute.failure_reason(ValueError("bad")) == "ValueError: bad"


def test_a_frozen_worker_is_named_with_its_address():
    # What TensorFlow's coordination service raises on the chief when a worker stops sending
    # heartbeats (a SIGSTOP in test_multiworker_recovery.py).
    message = (
        "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:chief/"
        "replica:0/task:0/device:CPU:0}} Collective ops is aborted by: Error reported from "
        "/job:worker/task:1: The following tasks are unhealthy (stopped sending heartbeats):\n"
        "/job:worker/replica:0/task:1\n"
        "The tasks have crashed. Check the task logs for an earlier error, or scheduler events "
        "(e.g. preemption, eviction) to debug further.\n"
        "The error could be from a previous operation. Restart your program to reset. "
        "[Op:CollectiveReduceV2] name: "
    )
    cluster = distribute.Cluster(
        "chief", 0, 3, True, {"chief": ["10.0.0.5:2222"], "worker": ["w0:2222", "w1:2222"]}
    )
    error = tf.errors.UnavailableError(None, None, message)
    assert distribute.failure_reason(error, cluster) == (
        "UnavailableError: Collective ops is aborted by: Error reported from /job:worker/task:1: "
        "The following tasks are unhealthy (stopped sending heartbeats): worker 1 (w1:2222)"
    )
    assert distribute.failure_reason(error).endswith("(stopped sending heartbeats): worker 1")


def test_mixed_precision_computes_in_bfloat16_and_exports_a_float32_copy(data):
    import keras
    import tensorflow_transform as tft

    from components.train.inputs import split_files
    from components.train.training import _float32_copy, build_model

    config = train_config(**{**SETTINGS, "precision": "mixed_bfloat16"})
    tft_output = tft.TFTransformOutput(str(data / "tft"))
    files = split_files(str(data / "tx"), "train")
    mixed = build_model(config, tft_output, files, "mixed_bfloat16")[0]
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    layers = {layer.name: layer for layer in mixed.scorer.layers}
    computes = {n: layer.compute_dtype for n, layer in layers.items()}
    assert computes["multi_gate_experts"] == "bfloat16"
    assert {computes[f"{t}_head"] for t in S.DEFAULT_TASKS} == {"float32"}
    assert all(w.dtype == "float32" for w in mixed.weights)
    served = _float32_copy(mixed, config, tft_output, files)
    assert {layer.compute_dtype for layer in served.scorer.layers} == {"float32"}
    for a, b in zip(served.weights, mixed.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_float16_training_scales_its_loss_and_serves_in_float32(data, tmp_path):
    import tensorflow as tf

    config = train_config(**{**SETTINGS, "precision": "mixed_float16", "max_epochs": 1})
    result = run_training(str(data / "tft"), str(data / "tx"), str(tmp_path), config, verbose=0)
    assert result.precision == "mixed_float16"
    assert all(np.isfinite(v[0]) for v in result.history.values())
    loaded = tf.saved_model.load(str(tmp_path / layout.SAVED_MODEL_DIR))
    outputs = loaded.signatures["serving_default"].structured_outputs
    assert {t.dtype for t in outputs.values()} == {tf.float32}


# Real runs.


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("distribute")
    transformed_dataset(root, synthetic_splits(384, 64, 64), S.DEMO_SCHEMA)
    return root


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory):
    """The reference: one process, the default strategy, the global batch."""
    config = train_config(
        **SETTINGS, batch_size=2 * REPLICA_BATCH, learning_rate=LEARNING_RATE * math.sqrt(2)
    )
    out = tmp_path_factory.mktemp("one")
    result = run_training(str(data / "tft"), str(data / "tx"), str(out), config, verbose=0)
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(settings: dict, tmp_path, name: str, env: dict | None = None) -> subprocess.Popen:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(settings))
    with open(tmp_path / f"{name}.log", "w") as log:  # the child keeps its own handle
        return subprocess.Popen(
            [sys.executable, RUNNER, str(path), str(tmp_path / f"{name}.result.json")],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _finish(process: subprocess.Popen, tmp_path, name: str) -> dict:
    code = process.wait(timeout=600)
    assert code == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    return json.loads((tmp_path / f"{name}.result.json").read_text())


def _assert_same_training(history: dict, reference: dict):
    assert history.keys() == reference.keys()
    for name, values in reference.items():
        assert len(history[name]) == len(values), name
        tolerance = AUC_TOLERANCE if name.endswith("_auc") else LOSS_TOLERANCE
        np.testing.assert_allclose(history[name], values, atol=tolerance, err_msg=name)


def _replica_settings(data, model_dir, logical_cpus=1) -> dict:
    config = dict(SETTINGS, batch_size=REPLICA_BATCH, learning_rate=LEARNING_RATE)
    return {
        "step": "train",
        "data": str(data),
        "model_dir": str(model_dir),
        "logical_cpus": logical_cpus,
        "config": config,
    }


def test_mirrored_over_two_devices_trains_like_one_device(data, one_process, tmp_path):
    settings = _replica_settings(data, tmp_path / "model", logical_cpus=2)
    result = _finish(_start(settings, tmp_path, "mirrored"), tmp_path, "mirrored")
    assert result["replicas"] == 2 and result["chief"]
    _assert_same_training(result["history"], one_process.history)
    info = json.loads((tmp_path / "model" / layout.TRAIN_INFO_FILE).read_text())
    assert info["result"]["replicas"] == 2
    assert (tmp_path / "model" / layout.SAVED_MODEL_DIR / "saved_model.pb").exists()


def test_pretraining_on_two_devices_scores_against_every_replicas_products(data, tmp_path):
    """Each replica takes half of a batch's queries; their in-batch negatives are the whole
    batch's products (all-gathered), so the losses are one device's. MiniLM frozen: only the
    projections train, and no dropout draws per replica."""
    config = dict(
        encoder_preset="all-minilm-l6-v2",
        fine_tune_layers=0,
        epochs=3,
        queries_per_batch=6,  # an odd share on the last batch of each epoch, too
        max_positives=2,
        ratio=3,
        projection_dim=16,
        learning_rate=5e-3,
        eval_negatives=10,
    )
    settings = {
        "step": "pretrain",
        "data": str(data),
        "model_dir": str(tmp_path / "preset"),
        "logical_cpus": 2,
        "config": config,
        "one_device_config": config,
    }
    result = _finish(_start(settings, tmp_path, "pretrain"), tmp_path, "pretrain")
    assert result["replicas"] == 2
    losses, reference = result["history"], result["one_device"]["history"]
    assert len(losses) == 3 and losses[-1] < losses[0]  # it learns
    np.testing.assert_allclose(losses, reference, rtol=1e-4)


def _tf_configs(workers: int) -> list[str]:
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(workers)]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        for i in range(workers)
    ]


def test_two_workers_train_like_one_process_and_only_the_chief_writes(data, one_process, tmp_path):
    scratch = [tmp_path / f"tmp{i}" for i in range(2)]
    workers = []
    for i, tf_config in enumerate(_tf_configs(2)):
        scratch[i].mkdir()
        settings = _replica_settings(data, tmp_path / "model")
        env = {"TF_CONFIG": tf_config, "TMPDIR": str(scratch[i])}
        workers.append(_start(settings, tmp_path, f"worker{i}", env))
    results = [_finish(w, tmp_path, f"worker{i}") for i, w in enumerate(workers)]
    assert [r["chief"] for r in results] == [True, False]
    assert all(r["replicas"] == 2 for r in results)
    _assert_same_training(results[0]["history"], one_process.history)
    assert results[1]["history"] == results[0]["history"]  # the metrics are global
    # One model, by the chief; the other worker's outputs were written aside and removed.
    assert (tmp_path / "model" / layout.SAVED_MODEL_DIR / "saved_model.pb").exists()
    assert not any(p.name.startswith("mlpr-worker-") for p in scratch[1].iterdir())


def test_a_lost_worker_fails_the_job_with_its_reason_instead_of_hanging(data, tmp_path):
    args = [
        "--transform-dir", str(data / "tft"), "--transformed-dir", str(data / "tx"),
        "--model-dir", str(tmp_path / "model"), "--encoder-preset", "tiny",
        "--batch-size", "16", "--max-epochs", "50", "--precision", "float32",
    ]  # fmt: skip
    # As a multi-node train step runs: the chief and a worker, the cluster on the command
    # line (components/train/multiworker.py), the worker's index from its environment.
    chief, worker = (f"127.0.0.1:{_free_port()}" for _ in range(2))
    cluster = ["--chief-address", chief, "--worker-addresses", worker]
    roles = [["--task-type", "chief"], ["--task-type", "worker"]]
    workers, logs = [], [tmp_path / f"worker{i}.log" for i in range(2)]
    for i, role in enumerate(roles):
        with open(logs[i], "w") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "components.train", *args, *cluster, *role],
                    cwd=REPO,
                    env={**os.environ, "PYTHONPATH": REPO, INDEX_ENV: "0"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + 300
    while "Epoch 2/" not in logs[0].read_text():  # the chief reports; training is under way
        assert workers[0].poll() is None, logs[0].read_text()[-3000:]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)
    workers[1].kill()
    killed = time.monotonic()
    code = workers[0].wait(timeout=120)  # a hang fails here
    output = logs[0].read_text()
    assert code == 1, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith("training failed on CollectiveAllReduceStrategy"), last
    assert "chief 0 of 2 workers" in last and "UnavailableError" in last, last
    assert not (tmp_path / "model" / layout.KERAS_MODEL_FILE).exists()
    assert time.monotonic() - killed < 120
