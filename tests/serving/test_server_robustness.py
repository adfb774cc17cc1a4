"""No request breaks the local server, and it keeps TF Serving's version policy.

- Requests malformed at the proto level (ranks, declared shapes, dtype enums, bytes that are
  not UTF-8, huge values) get INVALID_ARGUMENT with a bounded, valid UTF-8 message, before
  any large tensor is built.
- A fuzz run of generated malformed requests: no INTERNAL or UNKNOWN, a good request still
  succeeds after every 50, and the process does not grow.
- Versions: the newest serves, a removed newest falls back to the one before, a broken push
  is retried and reported in GetModelStatus, `latest:2` keeps the older version loadable,
  and none of that fails a request under 16 client threads.
"""

from __future__ import annotations

import collections
import contextlib
import json
import random
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_testlib import (
    BLESSED,
    FEATURES,
    catalog_rows,
    local_server,
    trained_model,
)
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from components.push.publish import push_model
from contract import schema as S
from serving.client import RankingClient, ServingError, ranking_inputs
from serving.request_checks import MAX_MESSAGE_CHARS
from serving.requests import predict_request
from serving.server import ModelServer
from serving.signatures import RANK_PRECOMPUTED, SCORE_EXAMPLES, SERVING_DEFAULT
from serving.versions import AVAILABLE, END, LOADING, VersionManager, VersionPolicy


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    repository = tmp_path_factory.mktemp("repository")
    with (
        local_server(model[1], repository, poll_seconds=0.5) as (served, target, _),
        grpc.insecure_channel(target) as channel,
    ):
        yield served, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _good(precomputed=True, n=3) -> predict_pb2.PredictRequest:
    signature = RANK_PRECOMPUTED if precomputed else SERVING_DEFAULT
    inputs = ranking_inputs("red boots", catalog_rows(n), FEATURES, precomputed)
    return predict_request("mlpr", signature, inputs)


def _declare(request, name, dims):
    """Declare input `name` with shape `dims`, keeping its (few) values."""
    shape = request.inputs[name].tensor_shape
    del shape.dim[:]
    for d in dims:
        shape.dim.add().size = d
    return request


def _strings(request, name, values):
    request.inputs[name].CopyFrom(tf.make_tensor_proto(np.array(values, dtype=object)))
    return request


def _set(change):
    def build():
        request = _good()
        change(request)
        return request

    return build


PROTO_CASES = [
    # (what, request builder, status, text the message holds)
    (
        "query of rank 33",
        _set(lambda r: _declare(r, S.QUERY, [1] * 33)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'query' of 'rank_precomputed' must be a scalar or a vector, got rank 33",
    ),
    (
        "a 3e7-entry title declared in 1 KB",
        _set(lambda r: _declare(_strings(r, S.PRODUCT_ID, ["p0-1"]), S.PRODUCT_ID, [30_000_000])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "request too large: input 'product_id' has 30000000 entries, at most 64",
    ),
    (
        "a 1e8-entry price with one value",
        _set(
            lambda r: (
                r.inputs["price"].CopyFrom(tf.make_tensor_proto(np.float32([1.0]))),
                _declare(r, "price", [100_000_000]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'price' has 100000000 entries",
    ),
    (
        "a negative dimension",
        _set(lambda r: _declare(r, "price", [-3])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'price' declares a negative dimension",
    ),
    (
        "an unknown dtype enum",
        _set(lambda r: setattr(r.inputs["price"], "dtype", 999)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'price' of 'rank_precomputed' must be float32, got unknown dtype enum 999",
    ),
    (
        "more values than the declared shape",
        _set(lambda r: _declare(r, "price", [2])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'price' is malformed",
    ),
    (
        "an unknown product id that is not UTF-8",
        _set(lambda r: _strings(r, S.PRODUCT_ID, [b"p0-1", b"\xff\xfe caf\xe9", b"p0-2"])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown product_id(s)",
    ),
    (
        "ten unknown ids of 10,000 characters",
        lambda: predict_request(
            "mlpr",
            RANK_PRECOMPUTED,
            {
                S.QUERY: ["a"] * 10,
                S.PRODUCT_ID: [f"{i}" + "x" * 10_000 for i in range(10)],
                **{f: [1.0] * 10 for f in FEATURES},
            },
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown product_id(s)",
    ),
    (
        "score_examples fed garbage",
        lambda: _strings(
            predict_request("mlpr", SCORE_EXAMPLES, {}), "examples", [b"\xff\x00 not a proto"]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "signature 'score_examples'",
    ),
    (
        "a version label",
        _set(lambda r: setattr(r.model_spec, "version_label", "stable")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: stable",
    ),
    (
        "a duplicate output filter",
        _set(lambda r: r.output_filter.extend(["score", "click", "score"])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "duplicate output tensor alias: score",
    ),
]


@pytest.mark.parametrize("case", PROTO_CASES, ids=[c[0] for c in PROTO_CASES])
def test_requests_malformed_at_the_proto_level_are_refused_clearly(server, case):
    _, build, code, text = case
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        server[1].Predict(build(), timeout=30)
    assert err.value.code() == code, err.value.details()
    details = err.value.details()
    assert text in details, details
    assert len(details) <= MAX_MESSAGE_CHARS
    assert time.monotonic() - start < 5.0


def _mutations(rng: random.Random):
    """Ways to break a good request: each returns a description and edits the request."""
    names = [S.QUERY, S.PRODUCT_ID, *FEATURES]
    junk = [b"", b"\xff" * 7, "\u200d".encode(), b"x" * 5000, b"\x00\x01", "é".encode("latin-1")]
    floats = [float("nan"), float("inf"), -float("inf"), 3.4e38, -1.0, 1e-45, 0.0]

    def rank(r):
        _declare(r, rng.choice(names), [1] * rng.randint(2, 40))

    def huge(r):
        _declare(r, rng.choice(names), [rng.choice([10**6, 10**8, 3 * 10**7, 2**40])])

    def dtype(r):
        r.inputs[rng.choice(names)].dtype = rng.choice([0, 2, 7, 9, 23, 99, 999, 2**20])

    def value(r):
        name = rng.choice(FEATURES)
        values = np.ones(3, np.float32)
        values[rng.randrange(3)] = rng.choice(floats)
        r.inputs[name].CopyFrom(tf.make_tensor_proto(values))

    def text(r):
        _strings(r, rng.choice([S.QUERY, S.PRODUCT_ID]), [rng.choice(junk) for _ in range(3)])

    def drop(r):
        del r.inputs[rng.choice(names)]

    def extra(r):
        r.inputs[rng.choice(["x", "query ", "y" * 3000])].CopyFrom(tf.make_tensor_proto([1.0]))

    def length(r):
        _strings(r, S.PRODUCT_ID, ["p0-1"] * rng.choice([0, 1, 2, 5]))

    def spec(r):
        choice = rng.randrange(4)
        if choice == 0:
            r.model_spec.signature_name = rng.choice(["nope", "\xff", "x" * 3000])
        elif choice == 1:
            r.model_spec.version.value = rng.choice([-1, 0, 2, 2**62])
        elif choice == 2:
            r.model_spec.version_label = rng.choice(["canary", "x" * 3000])
        else:
            r.output_filter.extend(rng.choice([["score", "score"], ["nope"], ["x" * 3000]]))

    def content(r):
        r.inputs["price"].tensor_content = bytes(rng.randrange(256) for _ in range(13))

    return [rank, huge, dtype, value, text, drop, extra, length, spec, content]


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def test_fuzzing_never_crashes_never_answers_internal_and_keeps_serving(server):
    rng = random.Random(0)
    mutations = _mutations(rng)
    stub = server[1]
    stub.Predict(_good(), timeout=30)  # warm
    rss_before = _rss_mb()
    codes: collections.Counter = collections.Counter()
    slowest = 0.0
    for i in range(1, 301):
        request = _good(precomputed=rng.random() < 0.7)
        for mutate in rng.sample(mutations, rng.choice([1, 1, 2, 3])):
            with contextlib.suppress(KeyError):  # the input it drops was already dropped
                mutate(request)
        start = time.monotonic()
        try:
            stub.Predict(request, timeout=30)
            codes["OK"] += 1
        except grpc.RpcError as err:
            codes[err.code().name] += 1
            assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                err.details()
            )
            assert len(err.details()) <= MAX_MESSAGE_CHARS
        slowest = max(slowest, time.monotonic() - start)
        if i % 50 == 0:
            response = stub.Predict(_good(), timeout=30)
            scores = tf.make_ndarray(response.outputs["score"])
            assert scores.shape == (3,) and np.all(np.isfinite(scores))
    print(f"fuzz: {dict(codes)}, slowest {slowest:.3f} s, RSS +{_rss_mb() - rss_before:.1f} MB")
    assert sum(codes.values()) == 300
    assert codes["INVALID_ARGUMENT"] >= 200  # the run did exercise the checks
    assert slowest < 5.0
    assert _rss_mb() - rss_before < 50


# Version policy, on the manager itself (a clock the test moves) and through the server.


def _push_copy(model_dir: str, base: Path, version: int) -> Path:
    """Version `version` of the same SavedModel, as a push would leave it."""
    target = base / "mlpr" / str(version)
    shutil.copytree(model_dir, target)
    return target


def test_removing_the_newest_version_falls_back_and_a_broken_push_is_retried(model, tmp_path):
    base = tmp_path / "repo"
    for version in (1, 2):
        _push_copy(model[1], base, version)
    now = [0.0]
    manager = VersionManager(
        str(base), "mlpr", max_load_retries=2, retry_interval_s=10, clock=lambda: now[0]
    )
    assert manager.poll().version == 2
    shutil.rmtree(base / "mlpr" / "2")
    assert manager.poll().version == 1  # fallback
    states = {s.version: s.state for s in manager.statuses()}
    assert states == {1: AVAILABLE, 2: END}

    # A push that copied saved_model.pb before its variables: fails, is retried, then loads.
    broken = base / "mlpr" / "3"
    broken.mkdir()
    shutil.copy(Path(model[1]) / "saved_model.pb", broken)
    assert manager.poll().version == 1
    status = {s.version: s for s in manager.statuses()}[3]
    assert (status.state, status.attempts) == (LOADING, 1) and status.error
    now[0] = 5.0  # before the retry interval: no new attempt
    manager.poll()
    assert {s.version: s for s in manager.statuses()}[3].attempts == 1
    shutil.copytree(Path(model[1]) / "variables", broken / "variables")
    shutil.copytree(Path(model[1]) / "assets", broken / "assets", dirs_exist_ok=True)
    for extra in Path(model[1]).iterdir():
        if extra.is_file() and not (broken / extra.name).exists():
            shutil.copy(extra, broken)
    now[0] = 11.0
    assert manager.poll().version == 3
    states = {s.version: s.state for s in manager.statuses()}
    assert states == {1: END, 2: END, 3: AVAILABLE}


def test_a_version_that_never_loads_ends_with_its_error(model, tmp_path):
    base = tmp_path / "repo"
    _push_copy(model[1], base, 1)
    (base / "mlpr" / "2").mkdir()  # never gets a SavedModel
    now = [0.0]
    manager = VersionManager(
        str(base), "mlpr", max_load_retries=1, retry_interval_s=1, clock=lambda: now[0]
    )
    assert manager.poll() is None  # 2 is wanted and 1 is not: nothing loaded yet
    now[0] = 2.0
    manager.poll()
    status = {s.version: s for s in manager.statuses()}[2]
    assert (status.state, status.attempts) == (END, 2)
    assert "saved_model.pb" in status.error


def test_version_policy_parses_like_the_flag():
    assert VersionPolicy.parse("latest").wanted([1, 2, 3]) == {3}
    assert VersionPolicy.parse("latest:2").wanted([1, 2, 3]) == {2, 3}
    assert VersionPolicy.parse("all").wanted([1, 5]) == {1, 5}
    for bad in ("latest:0", "newest", "all:2", "latest:x"):
        with pytest.raises(ValueError, match="version policy must be"):
            VersionPolicy.parse(bad)


def _status(port) -> dict:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "mlpr"
        response = stub.GetModelStatus(request, timeout=30)
    state = get_model_status_pb2.ModelVersionStatus.State.Name
    return {
        s.version: (state(s.state), s.status.error_message) for s in response.model_version_status
    }


def test_swap_broken_push_and_removal_under_16_threads_fail_no_request(model, tmp_path):
    """latest:2 serves versions 1 and 2 by number; then under 16 client threads: version 3 is
    pushed (swap), a broken version 4 is pushed (retried, never served, and reported END with
    its load error once removed), versions 4 and 3 are removed (fallback to 2). No request
    fails."""
    base = tmp_path / "repo"
    for version in (1, 2):
        _push_copy(model[1], base, version)
    server = ModelServer(
        str(base), "mlpr", workers=16, policy=VersionPolicy(latest=2), retry_interval_s=0.2
    )
    port = server.start("127.0.0.1", 0, poll_seconds=0.1)
    inputs = ranking_inputs("red boots", catalog_rows(20), FEATURES, precomputed=True)
    seen, timed, failures = [], [], []
    stop = threading.Event()

    def traffic():
        with RankingClient(f"127.0.0.1:{port}", timeout_s=30.0, max_attempts=1) as c:
            while not stop.is_set():
                try:
                    started = time.monotonic()
                    answered = c.predict(RANK_PRECOMPUTED, inputs)[1]
                    timed.append((started, answered))
                    seen.append(answered)
                except ServingError as err:
                    failures.append(str(err))
                time.sleep(0.01)  # steady traffic that leaves the loader some CPU

    def wait_for(condition, what):
        deadline = time.monotonic() + 240  # loads are slow on a busy 2-core machine
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    threads = [threading.Thread(target=traffic) for _ in range(16)]
    try:
        with RankingClient(f"127.0.0.1:{port}", timeout_s=30.0) as c:
            assert c.predict(RANK_PRECOMPUTED, inputs, version=1)[1] == 1  # pinned, older
        for t in threads:
            t.start()
        wait_for(lambda: len(seen) >= 32, "traffic on version 2")
        assert push_model(model[1], str(base), "mlpr", BLESSED).version == 3
        wait_for(lambda: seen.count(3) >= 32, "version 3 to serve")
        broken = base / "mlpr" / "4"
        broken.mkdir()
        shutil.copy(Path(model[1]) / "saved_model.pb", broken)
        wait_for(
            lambda: any(v.version == 4 and v.error for v in server.versions.statuses()),
            "the broken version's first failed load",
        )
        assert _status(port)[4][0] in ("LOADING", "END")  # LOADING while it is retried
        mark = len(seen)
        wait_for(lambda: len(seen) >= mark + 32, "traffic after the broken push")
        assert set(seen[mark:]) <= {3}
        shutil.rmtree(broken)  # no longer wanted: retries cancelled, END with its error
        wait_for(lambda: _status(port)[4][0] == "END", "the broken version to end")
        state, message = _status(port)[4]
        assert message and str(base) not in message  # the load error, no server path
        shutil.rmtree(base / "mlpr" / "3")
        wait_for(lambda: _status(port).get(3, ("",))[0] == "END", "version 3 to unload")
        unloaded = time.monotonic()
        mark = len(seen)
        wait_for(lambda: len(seen) >= mark + 32, "traffic after the removal")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        server.stop()
    assert failures == []
    # Requests sent after version 3 was unloaded went to version 2.
    assert {version for started, version in timed if started > unloaded} == {2}
    assert seen.count(2) >= 32 and seen.count(3) >= 32


# TF Serving's REST API over the same server (serving/rest.py), with a real HTTP client.


@pytest.fixture(scope="module")
def rest(server):
    served = server[0]
    port = served.start_rest("127.0.0.1", 0)
    return f"http://127.0.0.1:{port}"


def _http(url: str, method: str = "GET", body=None, raw: bytes | None = None):
    import urllib.error
    import urllib.request

    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _json_inputs(n=3):
    inputs = ranking_inputs("red boots", catalog_rows(n), FEATURES, precomputed=True)
    return {k: list(v) for k, v in inputs.items()}


def _full(**changed) -> dict:
    """Every input of rank_precomputed for 3 candidates, with `changed` ones replaced."""
    return {**_json_inputs(), **changed}


def test_rest_predict_in_row_and_columnar_format_equals_grpc(server, rest):
    grpc_scores = tf.make_ndarray(server[1].Predict(_good(), timeout=30).outputs["score"])
    inputs = _json_inputs()
    url = f"{rest}/v1/models/mlpr:predict"
    code, columnar = _http(url, "POST", {"signature_name": RANK_PRECOMPUTED, "inputs": inputs})
    assert code == 200, columnar
    np.testing.assert_allclose(columnar["outputs"]["score"], grpc_scores, rtol=1e-6)
    instances = [{k: v[i] for k, v in inputs.items()} for i in range(3)]
    code, rows = _http(
        f"{rest}/v1/models/mlpr/versions/1:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "instances": instances},
    )
    assert code == 200, rows
    assert len(rows["predictions"]) == 3
    np.testing.assert_allclose([p["score"] for p in rows["predictions"]], grpc_scores, rtol=1e-6)
    assert set(rows["predictions"][0]) == set(columnar["outputs"])


def test_rest_status_and_metadata_are_tf_servings_json(rest):
    code, status = _http(f"{rest}/v1/models/mlpr")
    assert code == 200
    assert status["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    code, metadata = _http(f"{rest}/v1/models/mlpr/versions/1/metadata")
    assert code == 200
    assert metadata["model_spec"]["name"] == "mlpr"
    assert metadata["model_spec"]["version"] == "1"
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {SERVING_DEFAULT, RANK_PRECOMPUTED} <= set(signatures)
    assert "product_id" in signatures[RANK_PRECOMPUTED]["inputs"]


REST_ERRORS = [
    # (path, method, body or raw bytes, HTTP status, text the error holds)
    ("/v1/models/shoes:predict", "POST", {"instances": [1]}, 404, "Servable not found"),
    ("/v1/models/mlpr/versions/9:predict", "POST", {"instances": [1]}, 404, "Specific('mlpr', 9)"),
    ("/v1/models/mlpr/labels/stable:predict", "POST", {"instances": [1]}, 400, "version label"),
    ("/v1/models/mlpr:predict", "POST", b"{not json", 400, "JSON Parse error"),
    ("/v1/models/mlpr:predict", "POST", b"[" * 100_000, 400, "JSON Parse error"),
    ("/v1/models/mlpr:predict", "POST", [1, 2], 400, "must be a JSON object"),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": "nope", "inputs": {}},
        400,
        'name: "nope" not found',
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED},
        400,
        "Missing 'inputs' or 'instances'",
    ),
    ("/v1/models/mlpr:predict", "POST", {"inputs": {}, "instances": []}, 400, "only one of"),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "instances": [{"query": "a"}, {"title": "b"}]},
        400,
        "same inputs",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "inputs": _full(query=[[[[[[[[[["x"]]]]]]]]]])},
        400,
        "nests lists",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "inputs": _full(query=[1.5])},
        400,
        "takes strings",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "inputs": _full(query=[{"b64": "***"}])},
        400,
        "no valid base64",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "inputs": _full(price=["cheap", 1.0, 2.0])},
        400,
        "takes numbers",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "inputs": _full(price=[[1.0], [2.0, 3.0]])},
        400,
        "rectangular",
    ),
    ("/v1/models/mlpr:classify", "POST", {"instances": [1]}, 400, "predict signatures only"),
    (
        "/v1/models/mlpr/versions/99999999999999999999:predict",
        "POST",
        {"instances": [1]},
        400,
        "Failed to convert version",
    ),
    ("/v2/models/mlpr", "GET", None, 404, "Not found"),
    ("/", "GET", None, 404, "Not found"),
    ("/v1/models/mlpr:PREDICT", "POST", {"instances": [1]}, 400, "Malformed request"),
    ("/v1/models/mlpr", "PUT", {"instances": [1]}, 400, "Malformed request: PUT"),
    ("/v1/models/mlpr", "DELETE", None, 400, "Malformed request: DELETE"),
    ("/v1/models/mlpr:predict", "PATCH", None, 400, "Malformed request: PATCH"),
    ("/v1/models/mlpr", "OPTIONS", None, 400, "Malformed request: OPTIONS"),
    ("/v1/models/mlpr:predict", "POST", b"", 400, "The document is empty"),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "inputs": {"query": ["a"]}},
        400,
        "Missing named input: discount in 'inputs' object.",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "instances": ["a", "b"]},
        400,
        "instances is a plain list",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "instances": [{"b64": "AA=="}]},
        400,
        # A b64 object is a value, as json_tensor.cc reads it: the first input's.
        "input 'discount' takes numbers (float32), got an object",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": SCORE_EXAMPLES, "instances": [{"b64": "AA=="}, {"examples": "x"}]},
        400,
        "Expecting value/list but got object at item 1",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "inputs": _full(price=[1.0] * 100_000)},
        400,
        "input 'price' has 100000 entries, at most 64",
    ),
    (
        "/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "instances": [{"query": "a"}] * 100_000},
        400,
        "'instances' has 100000 entries, at most 64",
    ),
    # A lone surrogate, as an input name, a value and a signature name: a client's mistake.
    ("/v1/models/mlpr:predict", "POST", b'{"inputs":{"\\ud800":1}}', 400, "Missing named input"),
    (
        "/v1/models/mlpr:predict",
        "POST",
        b'{"signature_name":"rank_precomputed","instances":[{"\\ud800":1}]}',
        400,
        "\\ud800",
    ),
    ("/v1/models/mlpr:predict", "POST", b'{"signature_name":"\\udcff"}', 400, "not found"),
    ("/v1/models/shoes", "GET", None, 404, "Could not find any versions"),
    ("/v1/models/mlpr/versions/7", "GET", None, 404, "Could not find version 7"),
]


@pytest.mark.parametrize(("path", "method", "body", "status", "text"), REST_ERRORS)
def test_rest_errors_are_tf_servings_codes_and_json(rest, path, method, body, status, text):
    raw = body if isinstance(body, bytes) else None
    code, answer = _http(rest + path, method, None if raw else body, raw=raw)
    assert code == status, answer
    assert set(answer) == {"error"} and text in answer["error"], answer
    assert len(answer["error"]) <= MAX_MESSAGE_CHARS


def test_rest_bad_values_are_refused_by_the_model_and_the_limits(rest):
    inputs = _json_inputs()
    inputs["price"][1] = -5.0  # outside the schema's range: the graph's own check
    code, answer = _http(
        f"{rest}/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "inputs": inputs},
    )
    assert code == 400 and "price" in answer["error"] and "candidate" in answer["error"], answer
    many = _json_inputs()
    many = {k: v * 100 for k, v in many.items()}  # 300 candidates, over --max-candidates
    code, answer = _http(
        f"{rest}/v1/models/mlpr:predict",
        "POST",
        {"signature_name": RANK_PRECOMPUTED, "inputs": many},
    )
    assert code == 400 and "300" in answer["error"], answer
