"""TF Serving's REST API (v1) in front of the local server's ModelServer.

The routes, bodies and status codes follow TF Serving's own handler
(tensorflow_serving/model_servers/http_rest_api_handler.cc, http_rest_api_util.cc,
http_server.cc and util/json_tensor.cc):

- `POST /v1/models/<name>[/versions/<n> | /labels/<label>]:predict` with
  `{"signature_name": ..., "instances": [...]}` (row format: one object per candidate, or
  one value when the signature has a single input) or `{"inputs": {...}}` (columnar);
  answers `{"predictions": [...]}` or `{"outputs": {...}}`;
- `GET /v1/models/<name>[/versions/<n>]`: the version status;
- `GET /v1/models/<name>[/versions/<n>]/metadata`: the signature defs;
- every error is `{"error": "<message>"}` with the HTTP status TF Serving maps the gRPC code
  to (INVALID_ARGUMENT and FAILED_PRECONDITION 400, NOT_FOUND 404, INTERNAL 500, ...).

A JSON request becomes the same PredictRequest proto a gRPC client sends, so every check of
the gRPC path (serving/request_checks.py, the checks in the model's graph) applies. Strings
are JSON strings or `{"b64": "..."}` for bytes, as in TF Serving.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2, predict_pb2

from serving.request_checks import RequestError, bounded, quoted
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
MAX_BODY_BYTES = 64 * 1024 * 1024
_MAX_DEPTH = 8  # nesting of a JSON tensor value; the signatures take rank <= 1


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


def _depth(value) -> int:
    """How deep `value` nests lists, counted without recursion (a hostile body may nest
    thousands deep); stops counting past _MAX_DEPTH."""
    depth, level = 0, [value]
    while level and depth <= _MAX_DEPTH:
        lists = [v for v in level if isinstance(v, list)]
        if not lists:
            break
        depth += 1
        level = [item for v in lists for item in v]
    return depth


def _leaf_bytes(name: str, value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"input {quoted(name)}: 'b64' holds no valid base64") from None
    raise _invalid(
        f'input {quoted(name)} takes strings (or {{"b64": ...}} for bytes), got '
        f"{bounded(json.dumps(value)[:64], 64)}"
    )


def to_tensor_proto(name: str, value, dtype: tf.DType):
    """A JSON value as the TensorProto of `dtype` that a gRPC client would send."""
    if _depth(value) > _MAX_DEPTH:
        raise _invalid(f"input {quoted(name)} nests lists more than {_MAX_DEPTH} deep")

    def convert(item):
        if isinstance(item, list):
            return [convert(v) for v in item]
        if dtype == tf.string:
            return _leaf_bytes(name, item)
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise _invalid(
                f"input {quoted(name)} takes numbers ({dtype.name}), got "
                f"{bounded(json.dumps(item)[:64], 64)}"
            )
        return item

    converted = convert(value)
    try:
        array = np.array(converted, dtype=object if dtype == tf.string else np.float64)
    except (ValueError, OverflowError) as err:
        raise _invalid(f"input {quoted(name)} is not a rectangular array: {err}") from None
    if dtype != tf.string:
        with np.errstate(over="ignore"):
            array = array.astype(dtype.as_numpy_dtype)  # beyond float32: inf, refused by the model
    return tf.make_tensor_proto(array, dtype=dtype)


def predict_request(spec: model_pb2.ModelSpec, body: dict, input_specs: dict):
    """(PredictRequest, row format?) from a parsed JSON body (FillPredictRequestFromJson)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.CopyFrom(spec)
    if "signature_name" in body:
        request.model_spec.signature_name = body["signature_name"]
    rows = "instances" in body
    if rows == ("inputs" in body):
        raise _invalid(
            "Missing 'inputs' or 'instances' key"
            if not rows
            else "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"
        )
    names = sorted(input_specs)
    if rows:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise _invalid("Expecting 'instances' to be a non-empty list/array")
        if len(names) == 1 and not all(isinstance(i, dict) for i in instances):
            columns = {names[0]: instances}
        else:
            columns = {}
            for k, instance in enumerate(instances):
                if not isinstance(instance, dict):
                    raise _invalid(
                        f"instance [{k}] must be an object naming the inputs {names}, got "
                        f"{bounded(json.dumps(instance)[:64], 64)}"
                    )
                if k and set(instance) != set(columns):
                    raise _invalid(
                        f"instance [{k}] names {sorted(bounded(n, 64) for n in instance)[:10]}, "
                        f"instance [0] {sorted(columns)}: every instance must name the same inputs"
                    )
                for key, value in instance.items():
                    columns.setdefault(key, []).append(value)
    else:
        inputs = body["inputs"]
        columns = (
            inputs if isinstance(inputs, dict) else {names[0]: inputs} if len(names) == 1 else None
        )
        if columns is None:
            raise _invalid(f"'inputs' must be an object naming the inputs {names}")
    for key, value in columns.items():
        if key not in input_specs:  # the gRPC path names unknown and missing inputs
            request.inputs[key].CopyFrom(tf.make_tensor_proto(0.0))
            continue
        request.inputs[key].CopyFrom(to_tensor_proto(key, value, input_specs[key].dtype))
    return request, rows


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
    """The REST routes over a ModelServer, answered as (HTTP status, JSON text)."""

    def __init__(self, server, max_body_bytes: int = MAX_BODY_BYTES):
        self.server = server
        self.max_body_bytes = max_body_bytes

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        try:
            return 200, self._route(method, path, body)
        except RequestError as err:
            return HTTP_STATUS[err.code], json.dumps({"error": bounded(err.message)})
        except Exception as err:  # the server's fault: say so, keep serving
            log.exception("REST request failed")
            message = bounded(f"{type(err).__name__}: {err}")
            return 500, json.dumps({"error": message})

    def _route(self, method: str, path: str, body: bytes) -> str:
        path = urllib.parse.urlsplit(path).path
        predict = _PREDICT.fullmatch(path) if method == "POST" else None
        status = _STATUS.fullmatch(path) if method == "GET" else None
        if predict is None and status is None:
            raise _invalid(f"Malformed request: {method} {bounded(path, 200)}")
        match = predict or status
        name, version, label, last = match.groups()
        if version and label:  # the pattern allows one of them only; kept for clarity
            raise _invalid("Both model version and model version label cannot be supplied.")
        if not name:
            raise _invalid("Missing model name in request.")
        spec = model_spec(name, version, label)
        if status is not None:
            if last == "metadata":
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=spec, metadata_field=["signature_def"]
                )
                return _metadata_json(self.server.metadata(request))
            return json_format.MessageToJson(
                self.server.model_status(spec),
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=True,
            )
        if last.lower() != "predict":
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{last} needs a {last} signature; this model serves predict signatures only",
            )
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
        request, rows = predict_request(spec, parsed, served.input_specs(signature))
        return json.dumps(predict_json(self.server.predict(request), rows))


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


class RestServer:
    """An HTTP server (the standard library's, one thread per connection) for RestApi."""

    def __init__(self, api: RestApi, host: str = "127.0.0.1", port: int = 8501):
        api_ref = api

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, method: str) -> None:
                length = self.headers.get("Content-Length")
                try:
                    size = int(length) if length else 0
                except ValueError:
                    size = -1
                if size < 0 or size > api_ref.max_body_bytes:
                    code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE if size > 0 else 400
                    self._reply(
                        code,
                        json.dumps(
                            {
                                "error": f"the body must declare a Content-Length of at most "
                                f"{api_ref.max_body_bytes} bytes"
                            }
                        ),
                    )
                    self.close_connection = True
                    return
                body = self.rfile.read(size) if size else b""
                code, text = api_ref.handle(method, self.path, body)
                self._reply(code, text)

            def _reply(self, code: int, text: str) -> None:
                data = text.encode("utf-8")
                self.send_response(int(code))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's method names)
                self._answer("GET")

            def do_POST(self):  # noqa: N802
                self._answer("POST")

            def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
                log.debug("REST %s", format % args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest", daemon=True)

    def start(self) -> int:
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
