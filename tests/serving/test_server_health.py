"""What the local server tells about itself: gRPC health follows version availability
(removal and re-push), version states end as TF Serving's do (a failed version no longer
wanted ends in END with its load error's code, retries cancelled), errors name no server
path, and a client's mistakes (an undecodable message, a method this server lacks, a message
over the size limit) get TF Serving's status and one log line, no traceback."""

from __future__ import annotations

import logging
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving_testlib import BLESSED, FEATURES, catalog_rows, trained_model
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from components.push.publish import push_model
from serving.client import ranking_inputs
from serving.request_checks import MAX_REQUEST_BYTES
from serving.requests import predict_request
from serving.server import ModelServer
from serving.signatures import RANK_PRECOMPUTED
from serving.versions import AVAILABLE, END, LOADING, VersionManager


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained_model(tmp_path_factory)


def _health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status


def _readiness(port: int) -> int:
    """What k8s/'s readiness probe asks: the model's metadata (200 once a version serves)."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v1/models/mlpr/metadata", timeout=30
        ) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def _wait(condition, what: str, seconds: float = 120) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def test_health_follows_availability_through_removal_and_repush(model, tmp_path):
    base = tmp_path / "repo"
    server = ModelServer(str(base), "mlpr", workers=4)
    port = server.start("127.0.0.1", 0, poll_seconds=0.2)
    rest = server.start_rest("127.0.0.1", 0)
    target = f"127.0.0.1:{port}"
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    try:
        assert _health(target) == not_serving and _readiness(rest) == 404  # nothing pushed
        push_model(model[1], str(base), "mlpr", BLESSED)
        _wait(lambda: _health(target) == serving, "SERVING after the push")
        assert _readiness(rest) == 200
        shutil.rmtree(base / "mlpr" / "1")  # every version folder removed
        took = _wait(lambda: _health(target) == not_serving, "NOT_SERVING after the removal")
        print(f"NOT_SERVING {took:.2f} s after the removal (poll 0.2 s)")
        assert _readiness(rest) == 404
        assert push_model(model[1], str(base), "mlpr", BLESSED).pushed  # version 1 again
        _wait(lambda: _health(target) == serving, "SERVING after the re-push")
        assert _readiness(rest) == 200
    finally:
        server.stop()


def _broken(base: Path, model_dir: str, version: int) -> Path:
    """A push that copied saved_model.pb only: every load of it fails."""
    path = base / "mlpr" / str(version)
    path.mkdir(parents=True)
    shutil.copy(Path(model_dir) / "saved_model.pb", path)
    return path


def test_a_failed_version_no_longer_wanted_ends_with_its_own_error_code(model, tmp_path):
    base = tmp_path / "repo"
    shutil.copytree(model[1], base / "mlpr" / "1")
    now = [0.0]
    manager = VersionManager(
        str(base), "mlpr", max_load_retries=5, retry_interval_s=10, clock=lambda: now[0]
    )
    assert manager.poll().version == 1
    (base / "mlpr" / "2").mkdir()  # no SavedModel at all: NOT_FOUND
    assert manager.poll().version == 1  # 1 serves while 2 waits for its retry
    status = {s.version: s for s in manager.statuses()}[2]
    assert (status.state, status.attempts) == (LOADING, 1)
    assert status.error_code == error_codes_pb2.NOT_FOUND
    assert str(base) not in status.error and "mlpr/2" in status.error
    # Version 3 comes and loads: 2 is no longer wanted, its retries are cancelled.
    shutil.copytree(model[1], base / "mlpr" / "3")
    now[0] = 5.0
    assert manager.poll().version == 3
    status = {s.version: s for s in manager.statuses()}[2]
    assert (status.state, status.attempts, status.error_code) == (END, 1, error_codes_pb2.NOT_FOUND)
    now[0] = 100.0
    manager.poll()
    assert {s.version: (s.state, s.attempts) for s in manager.statuses()} == {
        1: (END, 0),  # unloaded
        2: (END, 1),  # not retried
        3: (AVAILABLE, 1),
    }
    # Removed while waiting for a retry: END as well, with its error.
    _broken(base, model[1], 4)
    manager.poll()
    assert {s.version: s.state for s in manager.statuses()}[4] == LOADING
    shutil.rmtree(base / "mlpr" / "4")
    manager.poll()
    status = {s.version: s for s in manager.statuses()}[4]
    assert status.state == END and status.error and status.attempts == 1
    assert status.error_code not in (error_codes_pb2.OK, error_codes_pb2.UNAVAILABLE)


def _model_status(target: str) -> dict:
    with grpc.insecure_channel(target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "mlpr"
        response = stub.GetModelStatus(request, timeout=30)
    name = get_model_status_pb2.ModelVersionStatus.State.Name
    return {
        s.version: (name(s.state), s.status.error_code, s.status.error_message)
        for s in response.model_version_status
    }


def test_status_and_errors_over_grpc_and_client_mistakes_log_one_line(model, tmp_path, caplog):
    base = tmp_path / "repo"
    shutil.copytree(model[1], base / "mlpr" / "1")
    server = ModelServer(str(base), "mlpr", workers=4, max_load_retries=1, retry_interval_s=0.1)
    port = server.start("127.0.0.1", 0, poll_seconds=0.1)
    target = f"127.0.0.1:{port}"
    caplog.set_level(logging.INFO)
    try:
        (base / "mlpr" / "2").mkdir()  # never loads; version 1 keeps serving
        _wait(lambda: _model_status(target).get(2, ("",))[0] == "END", "version 2 to end")
        state, code, message = _model_status(target)[2]
        assert code == error_codes_pb2.NOT_FOUND and "mlpr/2" in message
        assert str(base) not in message and str(base.resolve()) not in message
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            inputs = ranking_inputs("red boots", catalog_rows(3), FEATURES, precomputed=True)
            request = predict_request("mlpr", RANK_PRECOMPUTED, inputs, version=7)
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert str(base) not in err.value.details() and "mlpr" in err.value.details()
            caplog.clear()
            with pytest.raises(grpc.RpcError) as err:
                stub.Classify(classification_pb2.ClassificationRequest(), timeout=30)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
            with pytest.raises(grpc.RpcError) as err:
                raw(b"\xff\xff\xff\xff not a proto", timeout=30)
            assert err.value.code() == grpc.StatusCode.INTERNAL
            assert "Failed to parse request" in err.value.details()
            big = predict_request(
                "mlpr", RANK_PRECOMPUTED, {**inputs, "query": ["x" * MAX_REQUEST_BYTES]}
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(big, timeout=30)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert stub.Predict(predict_request("mlpr", RANK_PRECOMPUTED, inputs), timeout=30)
        records = [r for r in caplog.records if r.name.startswith(("serving", "grpc"))]
        lines = [r.getMessage() for r in records]
        assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], lines
        assert any("Classify: UNIMPLEMENTED" in line for line in lines), lines
        assert any("Predict: INTERNAL" in line for line in lines), lines
    finally:
        server.stop()
