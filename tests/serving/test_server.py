"""The local model server over gRPC, through the client: the scores equal the in-process
model's, a new version pushed during traffic fails no request, malformed requests get
INVALID_ARGUMENT (unknown models and versions NOT_FOUND) with a message that says why."""

from __future__ import annotations

import shutil
import threading
import time

import grpc
import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving_testlib import (
    BLESSED,
    CONFIG,
    FEATURES,
    MAX_CANDIDATES,
    catalog_rows,
    local_server,
    trained_model,
)

from components.push.publish import push_model
from components.train.inputs import to_model_inputs
from contract import layout
from contract import schema as S
from contract.features import serving_feature_spec
from model.text_preprocessor import TextPreprocessor
from serving import client as client_cli
from serving.client import RankingClient, ServingError, ranking_inputs
from serving.requests import predict_request
from serving.server import ModelServer
from serving.signatures import RANK_PRECOMPUTED, SERVING_DEFAULT


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    with local_server(model[1], tmp_path_factory.mktemp("repository"), poll_seconds=0.2) as s:
        yield s


@pytest.fixture
def client(server):
    with RankingClient(server[1], timeout_s=30.0) as c:
        yield c


def _keras_scores(root, rows) -> dict:
    """The trained Keras model in this process, on the rows' raw features."""
    tft_output = tft.TFTransformOutput(str(root / "tft"))
    spec = serving_feature_spec(S.DEMO_SCHEMA)
    raw = {
        name: tf.constant([str(r[name]) for r in rows])
        if feature.dtype == tf.string
        else tf.constant([float(r[name]) for r in rows])
        for name, feature in spec.items()
    }
    transformed = tft_output.transform_features_layer()(raw)
    tokenizer = keras_hub.models.Tokenizer.from_preset(str(root / "model" / "encoder_preset"))
    preprocessor = TextPreprocessor(tokenizer, CONFIG.query_length, CONFIG.product_length)
    ranker = keras.saving.load_model(str(root / "model" / layout.KERAS_MODEL_FILE))
    out = ranker(to_model_inputs(transformed, preprocessor), training=False)
    return {t: np.asarray(out[t]).reshape(-1) for t in S.DEFAULT_TASKS}


def test_ranks_through_grpc_like_the_in_process_model(model, client):
    rows = catalog_rows(40, query="red boots")
    expected = _keras_scores(model[0], rows)
    expected_score = sum(expected[t] for t in S.DEFAULT_TASKS)
    by_id = {r[S.PRODUCT_ID]: i for i, r in enumerate(rows)}
    for precomputed in (False, True):
        ranked = client.rank("red boots", rows, FEATURES, precomputed=precomputed)
        assert len(ranked) == 40
        assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
        for r in ranked:
            i = by_id[r.product_id]
            for task in S.DEFAULT_TASKS:
                assert r.probabilities[task] == pytest.approx(expected[task][i], rel=1e-4, abs=1e-6)
            assert list(r.probabilities) == list(S.DEFAULT_TASKS)  # funnel order
            assert r.score == pytest.approx(expected_score[i], rel=1e-4)
    assert client.status() == {1: "AVAILABLE"}


def test_metadata_and_health(server, client):
    signatures = client.signatures()
    assert {SERVING_DEFAULT, RANK_PRECOMPUTED} <= set(signatures)
    assert signatures[RANK_PRECOMPUTED] == sorted([S.QUERY, S.PRODUCT_ID, *FEATURES])
    with grpc.insecure_channel(server[1]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tensorflow.serving.PredictionService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_cli_prints_the_ranking(server, tmp_path):
    import json

    rows = catalog_rows(5, query="red boots")
    products = tmp_path / "products.jsonl"
    products.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(
        client_cli.main,
        ["--target", server[1], "--query", "red boots", "--products", str(products), "--top", "3"],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split() == ["rank", "product_id", "score", "click", "atc", "purchase"]
    assert len(lines) == 4 and lines[1].split()[0] == "1"
    assert {line.split()[1] for line in lines[1:]} <= {r[S.PRODUCT_ID] for r in rows}


def _valid(precomputed=False, n=3) -> dict:
    return ranking_inputs("red boots", catalog_rows(n), FEATURES, precomputed)


def _strings(n):
    return np.array(["x"] * n, dtype=object)


MALFORMED = [
    # (what, signature, inputs, model name, version, code, message)
    (
        "wrong dtype",
        SERVING_DEFAULT,
        {**_valid(), "price": ["cheap", "dear", "free"]},
        "mlpr",
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'price' of 'serving_default' must be float32, got string",
    ),
    (
        "missing input",
        SERVING_DEFAULT,
        {k: v for k, v in _valid().items() if k != S.TITLE},
        "mlpr",
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "signature 'serving_default' is missing input(s) ['title']",
    ),
    (
        "empty candidate list",
        RANK_PRECOMPUTED,
        {
            S.QUERY: ["red boots"],
            S.PRODUCT_ID: _strings(0),
            **{f: np.zeros(0, np.float32) for f in FEATURES},
        },
        "mlpr",
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "empty candidate list: input 'product_id' has no entries",
    ),
    (
        "mismatched lengths",
        SERVING_DEFAULT,
        {**_valid(), S.BRAND: ["acme", "zeta"]},
        "mlpr",
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "mismatched lengths: input 'brand' has 2 entries but 'product_id' has 3",
    ),
    (
        "oversized batch",
        RANK_PRECOMPUTED,
        _valid(precomputed=True, n=MAX_CANDIDATES + 1),
        "mlpr",
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"request too large: input 'discount' has {MAX_CANDIDATES + 1} entries, at most "
        f"{MAX_CANDIDATES} per request",
    ),
    (
        "unknown product id",
        RANK_PRECOMPUTED,
        {**_valid(precomputed=True), S.PRODUCT_ID: ["p0-1", "no-such-product", "p0-2"]},
        "mlpr",
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown product_id(s), not in the pre-computed catalog of 192 products",
    ),
    (
        "unknown signature",
        "rank_everything",
        _valid(),
        "mlpr",
        None,
        grpc.StatusCode.FAILED_PRECONDITION,  # as TF Serving's predict_util.cc answers
        "Serving signature key 'rank_everything' not found. Version 1 of 'mlpr' has",
    ),
    (
        "unknown model",
        SERVING_DEFAULT,
        _valid(),
        "other",
        None,
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest('other') (this server serves 'mlpr')",
    ),
    (
        "unknown version",
        SERVING_DEFAULT,
        _valid(),
        "mlpr",
        7,
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific('mlpr', 7) (loaded versions: [1], policy "
        "latest:1",
    ),
    (
        "not a number",
        SERVING_DEFAULT,
        {**_valid(), "price": [1.0, float("nan"), 2.0]},
        "mlpr",
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "signature 'serving_default': input 'price' must be finite and at least 0; candidate 1 "
        "has nan",
    ),
    (
        "out of range",
        RANK_PRECOMPUTED,
        {**_valid(precomputed=True), "rating": [1.0, 9.0, 3.4e38]},
        "mlpr",
        None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'rating' must be finite and from 0 to 5; candidate 1 has 9",
    ),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_requests_get_a_clear_status(server, case):
    _, signature, inputs, model_name, version, code, message = case
    request = predict_request(model_name, signature, inputs, version)
    with grpc.insecure_channel(server[1]) as channel:
        stub = client_cli.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=30)
    assert err.value.code() == code
    assert message in err.value.details(), err.value.details()


def test_unreachable_server_is_retried_then_reported(server):
    # A port nobody listens on: UNAVAILABLE, retried with backoff, then a clear error.
    with RankingClient("127.0.0.1:1", timeout_s=2.0, max_attempts=3, backoff_s=0.05) as c:
        start = time.monotonic()
        with pytest.raises(ServingError, match="UNAVAILABLE.*after 3 attempts") as err:
            c.predict(SERVING_DEFAULT, _valid())
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - start >= 0.05 + 0.1  # two backoffs


def test_new_version_during_traffic_fails_no_request(model, tmp_path):
    """Version 2 is pushed while a client ranks continuously: every request succeeds, and
    the answers move from version 1 to version 2."""
    base = tmp_path / "repository"
    push_model(model[1], str(base), "mlpr", BLESSED)
    server = ModelServer(str(base), "mlpr", workers=8)
    port = server.start("127.0.0.1", 0, poll_seconds=0.1)
    inputs = _valid(precomputed=True, n=20)
    versions, failures = [], []
    stop = threading.Event()

    def traffic():
        with RankingClient(f"127.0.0.1:{port}", timeout_s=30.0, max_attempts=1) as c:
            for _ in range(5000):  # bounded; stops once version 2 has answered a while
                if stop.is_set():
                    break
                try:
                    versions.append(c.predict(RANK_PRECOMPUTED, inputs)[1])
                except ServingError as err:
                    failures.append(str(err))

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(versions) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.copytree(model[1], tmp_path / "v2")  # a retrained model: new version number
        pushed = push_model(str(tmp_path / "v2"), str(base), "mlpr", BLESSED)
        assert pushed.version == 2
        while versions.count(2) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        server.stop()
    assert failures == []
    assert versions.count(1) >= 10 and versions.count(2) >= 20
    assert versions[-1] == 2
