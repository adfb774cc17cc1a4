"""TF Serving's REST API (v1) in front of the local server's ModelServer.

The routes, bodies and status codes follow TF Serving's own handler
(tensorflow_serving/model_servers/http_rest_api_handler.cc, http_rest_api_util.cc,
http_server.cc and util/json_tensor.cc):

- `POST /v1/models/<name>[/versions/<n> | /labels/<label>]:predict` with
  `{"signature_name": ..., "instances": [...]}` (row format: one object per candidate, or
  one value when the signature has a single input) or `{"inputs": {...}}` (columnar);
  answers `{"predictions": [...]}` or `{"outputs": {...}}` (serving/json_tensors.py);
- `GET /v1/models/<name>[/versions/<n>]`: the version status;
- `GET /v1/models/<name>[/versions/<n>]/metadata`: the signature defs;
- every error is `{"error": "<message>"}` with the HTTP status TF Serving maps the gRPC code
  to (INVALID_ARGUMENT and FAILED_PRECONDITION 400, NOT_FOUND 404, INTERNAL 500, ...); a
  request under /v1/ that matches no route (another method, `:PREDICT`, a bad path) is
  400 "Malformed request", any other path 404.

A JSON request becomes the same PredictRequest proto a gRPC client sends, so every check of
the gRPC path (serving/request_checks.py, the checks in the model's graph) applies.

The HTTP server is aiohttp's (RestServer): keep-alive connections with TCP_NODELAY (no
Nagle stall between a response's headers and its body), chunked request bodies, bounded
request lines and headers, a listen backlog, a connection limit, an idle timeout that also
bounds how long a client may take to send its headers, a body timeout, and a body limit
enforced while the body is read. The requests themselves run on a thread pool, so a
prediction never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import threading
import urllib.parse
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from aiohttp import web, web_protocol, web_server
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2

from serving.json_tensors import predict_request
from serving.request_checks import MAX_REQUEST_BYTES, RequestError, bounded
from serving.signatures import SERVING_DEFAULT

log = logging.getLogger(__name__)

# TF Serving's routes (http_rest_api_util.cc).
_PREDICT = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)"
)
_STATUS = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?"
)
# http_server.cc, ToHTTPStatusCode.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
# http_server.cc hands TF Serving's handler the paths under /v1/ only (kPathRegex).
_V1 = re.compile(r"(?i)/v1/.*", re.DOTALL)


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    """The ModelSpec of a path's name, version and label (FillModelSpecWithNameVersionAndLabel)."""
    spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name))
    if version:
        try:
            spec.version.value = int(version)
        except ValueError:  # beyond int64
            raise _invalid(
                f"Failed to convert version: {bounded(version, 64)} to numeric."
            ) from None
    if label:
        spec.version_label = urllib.parse.unquote(label)
    return spec


def _json_value(array: np.ndarray):
    if array.dtype == object:

        def text(v: bytes):
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(v).decode("ascii")}

        return (
            np.vectorize(text, otypes=[object])(array).tolist()
            if array.ndim
            else text(array.item())
        )
    return array.tolist()


def predict_json(response: predict_pb2.PredictResponse, rows: bool) -> dict:
    """{"predictions": [...]} (row format) or {"outputs": ...} (MakeJsonFromTensors)."""
    outputs = {k: tf.make_ndarray(v) for k, v in sorted(response.outputs.items())}
    if not rows:
        if len(outputs) == 1:
            return {"outputs": _json_value(next(iter(outputs.values())))}
        return {"outputs": {k: _json_value(v) for k, v in outputs.items()}}
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Tensors of the row format must have the same size for the 0th dimension, got "
            f"{sizes}; ask for the columnar format ('inputs')",
        )
    values = {k: _json_value(v) for k, v in outputs.items()}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    count = next(iter(sizes.values()))
    return {"predictions": [{k: v[i] for k, v in values.items()} for i in range(count)]}


class RestApi:
    """The REST routes over a ModelServer, answered as (HTTP status, JSON text).

    Args:
        server: the ModelServer (its `served`, `predict`, `metadata`, `model_status` and
            `max_candidates`).
    """

    def __init__(self, server):
        self.server = server

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        """Answer one request; `path` is the request target as sent (query included)."""
        try:
            return 200, self._route(method, path, body)
        except RequestError as err:
            return HTTP_STATUS[err.code], error_json(err.message)
        except Exception as err:  # the server's fault: say so, keep serving
            log.exception("REST %s %s failed", method, bounded(path, 200))
            return 500, error_json(f"{type(err).__name__}: {err}")

    def _route(self, method: str, path: str, body: bytes) -> str:
        path = urllib.parse.urlsplit(path).path
        if not _V1.fullmatch(path):
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"Not found: {bounded(path, 200)}")
        predict = _PREDICT.fullmatch(path) if method == "POST" else None
        status = _STATUS.fullmatch(path) if method == "GET" else None
        # The patterns ignore case but the method must be spelt in lower case: TF Serving
        # answers `:PREDICT` as a malformed request.
        if (predict is None and status is None) or (
            predict is not None and predict.group(4) not in ("classify", "regress", "predict")
        ):
            raise _invalid(f"Malformed request: {bounded(method, 16)} {bounded(path, 200)}")
        match = predict or status
        name, version, label, last = match.groups()
        if version and label:  # the pattern allows one of them only; kept for clarity
            raise _invalid("Both model version and model version label cannot be supplied.")
        if not name:
            raise _invalid("Missing model name in request.")
        spec = model_spec(name, version, label)
        if status is not None:
            if last == "metadata":  # TF Serving: `/METADATA` asks for the status
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=spec, metadata_field=["signature_def"]
                )
                return _metadata_json(self.server.metadata(request))
            return json_format.MessageToJson(
                self.server.model_status(spec),
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=True,
            )
        if last != "predict":
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{last} needs a {last} signature; this model serves predict signatures only",
            )
        if not body:
            raise _invalid("JSON Parse error: The document is empty")
        # The standard library's parser: orjson parses a 100-candidate body in 0.11 ms against
        # 0.26 ms (0.32 MB at the 1,024-candidate limit: 1.3 against 2.8 ms), next to about
        # 14 ms of prediction, and it refuses NaN and Infinity, which TF Serving's parser reads
        # and requests use for missing features.
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as err:
            raise _invalid(f"JSON Parse error: {bounded(str(err), 200)}") from None
        if not isinstance(parsed, dict):
            raise _invalid("JSON Value: the request body must be a JSON object")
        served = self.server.served(spec)
        signature = parsed.get("signature_name", SERVING_DEFAULT)
        if not isinstance(signature, str):
            raise _invalid("'signature_name' must be a string")
        if signature not in served.signatures:
            raise _invalid(
                f'Serving signature name: "{bounded(signature, 64)}" not found in signature def'
            )
        request, rows = predict_request(
            spec, parsed, served.input_specs(signature), self.server.max_candidates
        )
        return json.dumps(predict_json(self.server.predict(request), rows))


def error_json(message: str) -> str:
    """TF Serving's error body: `{"error": "<message>"}`, bounded valid UTF-8."""
    return json.dumps({"error": bounded(message)})


def _metadata_json(response) -> str:
    """TF Serving's metadata JSON: the model spec and the signature defs, field names as in
    the protos."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    options = dict(always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
    return json.dumps(
        {
            "model_spec": json.loads(json_format.MessageToJson(response.model_spec, **options)),
            "metadata": {
                "signature_def": json.loads(json_format.MessageToJson(signature_map, **options))
            },
        },
        indent=1,
    )


def _json_response(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="application/json")


class _Connection(web_protocol.RequestHandler):
    """aiohttp's connection handler, answering what aiohttp refuses itself (a request line or
    header that does not parse or is too long, a handler fault) in TF Serving's JSON, with
    one log line for a client's mistake and a traceback only for the server's own fault."""

    def handle_error(self, request, status=500, exc=None, message=None) -> web.StreamResponse:
        if status >= 500:
            log.error("REST request failed with %d", status, exc_info=exc)
            message = "Internal error"
        else:
            log.warning(
                "REST request refused with %d: %s", status, bounded(message or exc or "", 200)
            )
        if request.writer.output_size > 0:  # a response has started: nothing more can go out
            raise ConnectionError("the response was already sent")
        response = _json_response(status, error_json(message or "Bad request"))
        response.force_close()
        return response


class _Server(web_server.Server):
    def __call__(self) -> _Connection:
        return _Connection(self, loop=self._loop, **self._kwargs)


class RestServer:
    """RestApi on aiohttp's HTTP server, in a thread with its own event loop.

    Args:
        api: the routes.
        host, port: where to listen (port 0: a free one).
        workers: threads that run the requests (parse, predict, encode).
        max_body_bytes: the largest request body, counted as it arrives (chunked bodies
            included); a declared Content-Length beyond it is refused before any of the body
            is read (413).
        max_connections: open connections beyond this many get 503 and are closed.
        backlog: the listen queue (connections the kernel holds before they are accepted).
        idle_timeout_s: how long a connection may stay without a whole request: between
            requests, and while its request line and headers arrive.
        body_timeout_s: how long a body may take to arrive (408 after).
        linger_s: how long the rest of a refused body is read and dropped before the
            connection closes (so that the client reads the answer rather than a reset).
    """

    def __init__(
        self,
        api: RestApi,
        host: str = "127.0.0.1",
        port: int = 8501,
        workers: int = 16,
        max_body_bytes: int = MAX_REQUEST_BYTES,
        max_connections: int = 512,
        backlog: int = 1024,
        idle_timeout_s: float = 30.0,
        body_timeout_s: float = 30.0,
        linger_s: float = 1.0,
    ):
        if min(workers, max_body_bytes, max_connections, backlog) < 1:
            raise ValueError(
                "workers, max_body_bytes, max_connections and backlog must be >= 1, got "
                f"{workers}, {max_body_bytes}, {max_connections}, {backlog}"
            )
        self.api = api
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.backlog = backlog
        self.idle_timeout_s = idle_timeout_s
        self.body_timeout_s = body_timeout_s
        self.linger_s = linger_s
        self._executor = futures.ThreadPoolExecutor(workers, thread_name_prefix="rest")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _Server | None = None
        self._runner: web.ServerRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> int:
        """Listen and serve; returns the bound port. Raises when it cannot bind."""
        self._thread = threading.Thread(target=self._run, name="rest", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self.port

    def stop(self) -> None:
        """Close the listening socket and every connection, then the loop's thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            closing = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(Exception):
                closing.result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as err:  # e.g. the port is taken: start() raises it
            self._error = err
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _open(self) -> None:
        self._server = _Server(
            self._handle,
            request_factory=self._request,
            access_log=None,
            keepalive_timeout=self.idle_timeout_s,
            lingering_time=self.linger_s,
        )
        self._runner = web.ServerRunner(self._server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=self.backlog)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def _request(self, message, payload, protocol, writer, task) -> web.BaseRequest:
        # aiohttp's request, with the body limit that `read()` enforces as the body arrives.
        return web.BaseRequest(
            message,
            payload,
            protocol,
            writer,
            task,
            protocol._loop,
            client_max_size=self.max_body_bytes,
        )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if len(self._server.connections) > self.max_connections:
            response = _json_response(
                503, error_json(f"more than {self.max_connections} open connections; retry")
            )
            response.force_close()
            return response
        body = b""
        if request.body_exists:
            declared = request.content_length
            if declared is not None and declared > self.max_body_bytes:
                return self._too_large(declared)
            if request.headers.get("Expect", "").lower() == "100-continue":
                # What aiohttp's router does for a client that waits before it sends a body.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self._too_large(None)
            except TimeoutError:
                log.info(
                    "REST client %s sent no whole body in %g s", request.remote, self.body_timeout_s
                )
                response = _json_response(
                    408,
                    error_json(f"the request body did not arrive within {self.body_timeout_s:g} s"),
                )
                response.force_close()
                return response
            except web.RequestPayloadError as err:
                log.info("REST client %s sent a malformed body: %s", request.remote, err)
                response = _json_response(400, error_json(f"malformed request body: {err}"))
                response.force_close()
                return response
            except ConnectionError:
                log.info("REST client %s disconnected before its body arrived", request.remote)
                response = _json_response(400, error_json("client disconnected"))
                response.force_close()
                return response
        loop = asyncio.get_running_loop()
        status, text = await loop.run_in_executor(
            self._executor, self.api.handle, request.method, request.raw_path, body
        )
        if request.transport is None or request.transport.is_closing():
            log.info("REST client %s disconnected before its answer (%d)", request.remote, status)
        return _json_response(status, text)

    def _too_large(self, declared: int | None) -> web.Response:
        size = f"{declared} bytes" if declared is not None else "a longer body"
        response = _json_response(
            413, error_json(f"request body too large: {size}, at most {self.max_body_bytes}")
        )
        response.force_close()  # the rest of the body is not read
        return response
