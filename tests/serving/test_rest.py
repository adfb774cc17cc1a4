"""The local server's REST API on its HTTP server, over loopback: TF Serving's answers for
TF Serving's inputs (b64 rows, extra columnar inputs ignored), keep-alive without Nagle
stalls, chunked bodies, JSON for every error the HTTP layer raises, bodies refused while
they arrive, slow and vanishing clients dropped with one log line, bursts of 64
connections, and a fuzz and soak run: 500 malformed bodies, no 5xx, no HTML, still serving.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import http.client
import json
import logging
import random
import socket
import statistics
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_testlib import FEATURES, MAX_CANDIDATES, catalog_rows, local_server, trained_model
from tensorflow_serving.apis import prediction_service_pb2_grpc

from conftest import make_raw_example
from contract import schema as S
from serving.client import ranking_inputs
from serving.request_checks import MAX_MESSAGE_CHARS, MAX_REQUEST_BYTES
from serving.requests import predict_request
from serving.rest import RestApi, RestServer
from serving.signatures import RANK_PRECOMPUTED, SCORE_EXAMPLES, SERVING_DEFAULT

PREDICT = "/v1/models/mlpr:predict"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    with local_server(model[1], tmp_path_factory.mktemp("repository"), poll_seconds=0.5) as (
        served,
        target,
        _,
    ):
        port = served.start_rest("127.0.0.1", 0)
        yield served, target, port


def _inputs(n=3) -> dict:
    inputs = ranking_inputs("red boots", catalog_rows(n), FEATURES, precomputed=True)
    return {k: list(v) for k, v in inputs.items()}


def _body(n=3, **extra) -> bytes:
    return json.dumps({"signature_name": RANK_PRECOMPUTED, "inputs": _inputs(n), **extra}).encode()


def _send(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    """(status, parsed JSON body) on a kept-alive connection; the body must be JSON."""
    conn.request(method, path, body=body, headers=headers or {})
    answer = conn.getresponse()
    data = answer.read()
    assert answer.getheader("Content-Type", "").startswith("application/json"), data[:200]
    return answer.status, json.loads(data) if data else None


def _raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes (or `timeout`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def _json_answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def _grpc_scores(target: str, n=3) -> np.ndarray:
    request = predict_request("mlpr", RANK_PRECOMPUTED, _inputs(n))
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return tf.make_ndarray(stub.Predict(request, timeout=30).outputs["score"])


def test_keep_alive_sets_tcp_nodelay_and_chunked_bodies_keep_the_connection_in_step(server):
    served, target, port = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    status, plain = _send(conn, "POST", PREDICT, _body())
    assert status == 200
    sockets = [c.transport.get_extra_info("socket") for c in served._rest._server.connections]
    assert sockets and all(
        s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets
    )  # no Nagle stall between a response's headers and its body
    np.testing.assert_allclose(plain["outputs"]["score"], _grpc_scores(target), rtol=1e-6)
    local = conn.sock.getsockname()
    body = _body()
    pieces = [body[i : i + 97] for i in range(0, len(body), 97)]
    status, chunked = _send(conn, "POST", PREDICT, iter(pieces))  # http.client: chunked
    assert status == 200 and chunked == plain
    timings = []
    for _ in range(20):  # the same connection answers the next requests in step
        start = time.perf_counter()
        status, answer = _send(conn, "GET", "/v1/models/mlpr")
        timings.append(time.perf_counter() - start)
        assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    assert conn.sock.getsockname() == local  # one connection throughout
    print(f"keep-alive status GET p50 {statistics.median(timings) * 1e3:.1f} ms")
    conn.close()


def test_b64_rows_of_a_single_input_signature_and_extra_columnar_inputs(server):
    """TF Serving's json_tensor.cc: `{"b64": ...}` is a value in the row format of a
    one-input signature, and the columnar format ignores names the signature does not take."""
    _, target, port = server
    rows = catalog_rows(4, query="red boots")
    examples = [base64.b64encode(make_raw_example(r, S.DEMO_SCHEMA)).decode("ascii") for r in rows]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    status, by_rows = _send(
        conn,
        "POST",
        PREDICT,
        json.dumps({"signature_name": SCORE_EXAMPLES, "instances": [{"b64": e} for e in examples]}),
    )
    assert status == 200, by_rows
    status, by_columns = _send(
        conn,
        "POST",
        PREDICT,
        json.dumps({"signature_name": SCORE_EXAMPLES, "inputs": [{"b64": e} for e in examples]}),
    )
    assert status == 200, by_columns
    scores = [p["score"] for p in by_rows["predictions"]]
    assert len(scores) == 4
    np.testing.assert_allclose(by_columns["outputs"]["score"], scores, rtol=1e-6)
    status, raw = _send(
        conn,
        "POST",
        PREDICT,
        json.dumps(
            {
                "signature_name": SERVING_DEFAULT,
                "inputs": {
                    name: [str(r[name]) if name in S.TEXT_COLUMNS else r[name] for r in rows]
                    for name in [S.QUERY, S.PRODUCT_ID, S.TITLE, S.PRODUCT_TYPE, S.BRAND]
                    + [S.COLOR, S.GENDER, *FEATURES]
                },
            }
        ),
    )
    assert status == 200, raw
    np.testing.assert_allclose(raw["outputs"]["score"], scores, rtol=1e-5)
    body = {"signature_name": RANK_PRECOMPUTED, "inputs": {**_inputs(), "nope": [1, 2]}}
    status, extra = _send(conn, "POST", PREDICT, json.dumps(body))
    assert status == 200, extra
    np.testing.assert_allclose(extra["outputs"]["score"], _grpc_scores(target), rtol=1e-6)
    conn.close()


def test_http_layer_errors_are_json(server):
    port = server[2]
    status, answer = _json_answer(_raw(port, b"GARBAGE\r\n\r\n"))
    assert status == 400 and set(answer) == {"error"}
    status, answer = _json_answer(
        _raw(
            port,
            b"GET /v1/models/mlpr HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        )
    )
    assert 400 <= status < 500 and set(answer) == {"error"}
    status, answer = _json_answer(
        _raw(
            port,
            b"POST /v1/models/mlpr:predict HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n",
        )
    )
    assert status == 400 and set(answer) == {"error"}, answer
    raw = _raw(port, b"HEAD /v1/models/mlpr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400"), raw[:100]


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def _upload_64mb(port: int, chunked: bool) -> tuple[int, dict, float]:
    """Send a 64 MB predict body as fast as the server takes it; (status, answer, seconds
    until the answer arrived)."""
    size = 64 * 2**20
    block = b"[" + b"1," * (2**20 // 2 - 1) + b"1]"  # 1 MB of JSON-looking bytes
    head = b"POST /v1/models/mlpr:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += (
        b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: %d\r\n\r\n" % size
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    start = time.perf_counter()

    def upload():
        with contextlib.suppress(OSError):
            sock.sendall(head)
            for _ in range(size // len(block)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)

    sender = threading.Thread(target=upload)
    sender.start()
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 10:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    elapsed = time.perf_counter() - start
    with contextlib.suppress(OSError):
        data += sock.recv(65536)
    sock.close()
    sender.join(timeout=30)
    status, answer = _json_answer(data)
    return status, answer, elapsed


def test_big_bodies_are_refused_while_they_arrive(server):
    _, target, port = server
    _grpc_scores(target)
    rss = _rss_mb()
    for chunked in (False, True):
        status, answer, elapsed = _upload_64mb(port, chunked)
        print(
            f"64 MB body ({'chunked' if chunked else 'Content-Length'}): {status} in "
            f"{elapsed:.3f} s, RSS +{_rss_mb() - rss:.0f} MB"
        )
        assert status == 413 and str(MAX_REQUEST_BYTES) in answer["error"], answer
        assert elapsed < 2.0  # the target is 0.5 s; the margin is for a loaded machine
    assert _rss_mb() - rss < 100
    np.testing.assert_allclose(_grpc_scores(target), _grpc_scores(target))  # still serving


def test_slow_clients_are_dropped_and_vanishing_ones_log_one_line(server, caplog):
    served, _, _ = server
    rest = RestServer(
        RestApi(served),
        "127.0.0.1",
        0,
        workers=2,
        idle_timeout_s=0.5,
        body_timeout_s=2.0,
        linger_s=0.2,
        max_connections=8,
    )
    port = rest.start()
    caplog.set_level(logging.DEBUG)
    try:
        start = time.perf_counter()
        # Headers that never end: the connection is closed after the idle timeout.
        assert _raw(port, b"POST /v1/models/mlpr:predict HTTP/1.1\r\nHost: x\r\n") == b""
        assert time.perf_counter() - start < 3.0
        # A body that stops: 408 in JSON, then the connection closes.
        status, answer = _json_answer(
            _raw(
                port,
                b"POST /v1/models/mlpr:predict HTTP/1.1\r\nHost: x\r\n"
                b'Content-Length: 1000\r\n\r\n{"inputs"',
            )
        )
        assert status == 408 and "did not arrive" in answer["error"]
        # A client that leaves before its body, and one that leaves before its answer.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"POST /v1/models/mlpr:predict HTTP/1.1\r\nHost: x\r\n"
                b'Content-Length: 1000\r\n\r\n{"inp'
            )
            # Leave while the server reads the body, not before its handler starts (a request
            # whose connection is gone by then is never handled, and nothing is logged).
            time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            body = _body()
            sock.sendall(
                b"POST /v1/models/mlpr:predict HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
        # Connections beyond the limit get 503, the others are answered.
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        try:
            status, answer = _json_answer(
                _raw(port, b"GET /v1/models/mlpr HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
            )
            assert status == 503 and "open connections" in answer["error"]
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 5.0  # the vanished clients' lines, on a loaded machine
        while time.monotonic() < deadline and not any(
            "disconnected before its body" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        assert _send(conn, "GET", "/v1/models/mlpr")[0] == 200
        conn.close()
    finally:
        rest.stop()
    records = [r for r in caplog.records if r.name.startswith(("serving", "aiohttp"))]
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info], [
        r.getMessage() for r in records if r.levelno >= logging.ERROR or r.exc_info
    ]
    assert any("disconnected before its body" in r.getMessage() for r in records)
    assert any("sent no whole body" in r.getMessage() for r in records)


def test_a_burst_of_64_new_connections_is_answered(server):
    port = server[2]
    body = _body()

    def one(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start = time.perf_counter()
        if i % 2:
            status, answer = _send(conn, "GET", "/v1/models/mlpr")
        else:
            status, answer = _send(conn, "POST", PREDICT, body)
        conn.close()
        return i % 2, status, time.perf_counter() - start

    for _ in range(2):
        barrier_start = time.perf_counter()
        with futures.ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, range(64)))
        assert [r[1] for r in results] == [200] * 64
        gets = sorted(r[2] for r in results if r[0])
        print(
            f"64 connections: status GET p50 {gets[len(gets) // 2] * 1e3:.0f} ms, max "
            f"{gets[-1] * 1e3:.0f} ms; all in {time.perf_counter() - barrier_start:.2f} s"
        )


def _mutations(rng: random.Random):
    junk = [
        None,
        True,
        -1,
        1e308,
        float("nan"),
        "",
        "x" * 5000,
        [],
        {},
        [[1]],
        {"b64": "AA=="},
        "\udcff",
        {"b64": 7},
        [None] * 3,
        10**400,
    ]

    def value(body):
        inputs = body["inputs"]
        name = rng.choice(sorted(inputs))
        kind = rng.randrange(6)
        if kind == 0:
            inputs[name] = rng.choice(junk)
        elif kind == 1:
            inputs[name][rng.randrange(len(inputs[name]))] = rng.choice(junk)
        elif kind == 2:
            del inputs[name]
        elif kind == 3:
            inputs[rng.choice(["extra", "\ud800", "x" * 300])] = inputs[name]
        elif kind == 4:
            inputs[name] = [inputs[name]] * rng.randint(1, 3)
        else:
            inputs[name] = inputs[name] * rng.choice([0, 30, 1000])

    def top(body):
        body[rng.choice(["signature_name", "instances", "inputs", "junk"])] = rng.choice(junk)

    def rows(body):
        inputs = body.pop("inputs")
        instances = [{k: v[i] for k, v in inputs.items()} for i in range(3)]
        choice = rng.randrange(4)
        if choice == 0:
            instances[rng.randrange(3)].pop(rng.choice(sorted(inputs)))
        elif choice == 1:
            instances[1] = rng.choice(junk)
        elif choice == 2:
            instances = instances * rng.choice([30, 100])
        body["instances"] = instances

    return [value, top, rows]


def _fuzzed_bytes(rng: random.Random, body: dict) -> bytes:
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    kind = rng.randrange(8)
    if kind == 0:
        cut = rng.randrange(len(raw))
        return raw[:cut]
    if kind == 1:
        i = rng.randrange(len(raw))
        return raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1 :]
    if kind == 2:
        return b"[" * rng.choice([10, 1000, 100_000])
    return raw


def test_rest_fuzz_and_soak_never_answers_5xx_or_html_and_keeps_serving(server):
    """500 malformed bodies on kept-alive connections (sent plain or chunked): each gets a
    JSON answer below 500 with a bounded message; a good request after every 50 gets the
    gRPC scores."""
    _, target, port = server
    expected = _grpc_scores(target)
    rng = random.Random(7)
    mutations = _mutations(rng)
    codes: collections.Counter = collections.Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start = time.perf_counter()
    for i in range(1, 501):
        body = {"signature_name": RANK_PRECOMPUTED, "inputs": _inputs()}
        for mutate in rng.sample(mutations, rng.choice([1, 1, 2])):
            with contextlib.suppress(KeyError, IndexError, TypeError, ValueError, AttributeError):
                mutate(body)
        raw = _fuzzed_bytes(rng, body)
        chunked = rng.random() < 0.2
        payload = iter([raw[: len(raw) // 2], raw[len(raw) // 2 :]]) if chunked else raw
        try:
            status, answer = _send(conn, "POST", PREDICT, payload)
        except (http.client.HTTPException, ConnectionError):  # closed after an HTTP error
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            status, answer = _send(conn, "POST", PREDICT, raw)
        codes[status] += 1
        assert status < 500, answer
        if status == 200:
            assert set(answer) in ({"outputs"}, {"predictions"})
        else:
            assert set(answer) == {"error"} and len(answer["error"]) <= MAX_MESSAGE_CHARS
        if i % 50 == 0:
            status, good = _send(conn, "POST", PREDICT, _body())
            assert status == 200
            np.testing.assert_allclose(good["outputs"]["score"], expected, rtol=1e-6)
    conn.close()
    print(f"REST fuzz: {dict(codes)} in {time.perf_counter() - start:.1f} s")
    assert sum(codes.values()) == 500
    assert codes[400] >= 300  # the run did exercise the checks
    assert MAX_CANDIDATES == 64  # the `* 1000` and `* 100` mutations went past the limit
