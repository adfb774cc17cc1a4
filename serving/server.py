"""A local gRPC model server speaking TF Serving's API, for development and tests.

Production serves the model with the official TF Serving image (k8s/). This server answers
the same protos over the same model repository, so the client, the benchmarks and the tests
run where no `tensorflow_model_server` binary exists:

- `tensorflow.serving.PredictionService`: Predict, GetModelMetadata (signature_def);
- `tensorflow.serving.ModelService`: GetModelStatus;
- `grpc.health.v1.Health`: SERVING while a version is AVAILABLE, NOT_SERVING while none is
  (none loaded yet, or every version directory removed);
- with `--rest-port`, TF Serving's REST API (serving/rest.py): predict in row or columnar
  JSON, model status and metadata, errors as `{"error": ...}` with TF Serving's HTTP codes.

It serves one model with TF Serving's version policy (serving/versions.py): the newest
version by default (`--versions latest:N` or `all` keep older ones loadable by number), polls
the repository, swaps without failing requests in flight, falls back when the newest
directory disappears, and retries failed loads. A request is checked before any tensor is
built from it (serving/request_checks.py), and the model checks its values in its own graph.
Status codes follow TF Serving's source (tensorflow_serving/servables/tensorflow/
predict_util.cc and core/basic_manager.cc, server_core.cc): a malformed request gets
INVALID_ARGUMENT naming the input, an unknown signature FAILED_PRECONDITION, an unknown model
or version NOT_FOUND, an unknown version label INVALID_ARGUMENT. Error texts are valid UTF-8
of at most 1 KB. It binds to 127.0.0.1 unless told otherwise.

    python -m serving.server --model-base runs/serving --model-name mlpr --port 8500 \
        --rest-port 8501
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from concurrent import futures

import click
import grpc
import tensorflow as tf
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from serving import tfs_config
from serving.request_checks import (
    MAX_REQUEST_BYTES,
    RequestError,
    bounded,
    checked_array,
    quoted,
)
from serving.signatures import SERVING_DEFAULT
from serving.versions import (
    AVAILABLE,
    END,
    LATEST,
    MAX_LOAD_RETRIES,
    POLL_SECONDS,
    RETRY_INTERVAL_S,
    ServedVersion,
    VersionManager,
    VersionPolicy,
)

log = logging.getLogger(__name__)

# TF Serving never splits a request across batches: no more candidates than one CPU batch.
DEFAULT_MAX_CANDIDATES = tfs_config.BATCHING_PROFILES["cpu"].max_batch_size
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
_ASSERTION = re.compile(r"assertion failed: (.*?)(?:\n|$)", re.DOTALL)


class ModelServer:
    """The servicers, the version manager and the gRPC server around them.

    Args:
        model_base: root of the model repository.
        model_name: the model served (its directory under model_base).
        max_candidates: largest number of entries an input may carry in one request.
        workers: request threads.
        policy: which versions to serve (`latest:N` or `all`, TF Serving's
            model_version_policy).
        max_load_retries, retry_interval_s: how often and how far apart a failed load is
            retried (TF Serving's defaults: 5, 60 s).
    """

    def __init__(
        self,
        model_base: str,
        model_name: str = "mlpr",
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        workers: int = 16,
        policy: VersionPolicy = LATEST,
        max_load_retries: int = MAX_LOAD_RETRIES,
        retry_interval_s: float = RETRY_INTERVAL_S,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ):
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
        self.model_name = model_name
        self.max_candidates = max_candidates
        self.versions = VersionManager(
            model_base,
            model_name,
            policy,
            max_load_retries,
            retry_interval_s,
            warmup=self._warmup,
            on_switch=lambda served: self._set_health(served is not None),
        )
        self.workers = workers
        self.max_request_bytes = max_request_bytes
        self.health = health.HealthServicer()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict"),
            options=[
                ("grpc.max_receive_message_length", max_request_bytes),
                ("grpc.max_send_message_length", max_request_bytes),
            ],
        )
        self._server.add_generic_rpc_handlers(_services(self))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port: int | None = None
        self.rest_port: int | None = None
        self._rest = None

    def start(
        self, host: str = "127.0.0.1", port: int = 8500, poll_seconds: float = POLL_SECONDS
    ) -> int:
        """Load the newest version, bind `host:port` (0: a free port) and serve; returns the
        bound port. Raises when the port cannot be bound."""
        self._set_health(self.versions.poll() is not None)
        bound = self._server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"could not bind {host}:{port}")
        self._server.start()
        self.port = bound
        self.versions.start(poll_seconds)
        log.info("serving %r on %s:%d", self.model_name, host, bound)
        return bound

    def start_rest(self, host: str = "127.0.0.1", port: int = 8501) -> int:
        """Also answer TF Serving's REST API (serving/rest.py) on `host:port` (0: a free
        port); returns the bound port."""
        from serving.rest import RestApi, RestServer

        self._rest = RestServer(
            RestApi(self), host, port, self.workers, max_body_bytes=self.max_request_bytes
        )
        self.rest_port = self._rest.start()
        log.info("REST API of %r on %s:%d", self.model_name, host, self.rest_port)
        return self.rest_port

    def stop(self, grace: float = 1.0) -> None:
        if self._rest is not None:
            self._rest.stop()
        self.versions.stop()
        self._set_health(False)
        self._server.stop(grace).wait()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", PREDICTION_SERVICE):
            self.health.set(service, status)

    # Request handling.

    def served(self, model_spec) -> ServedVersion:
        """The loaded version a request's model_spec names, or TF Serving's error for it."""
        if model_spec.HasField("version_label"):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unrecognized servable version label: {bounded(model_spec.version_label, 64)} "
                "(this server has no version labels; name a version number or none)",
            )
        pinned = model_spec.HasField("version")
        wanted = (
            f"Specific({quoted(model_spec.name)}, {model_spec.version.value})"
            if pinned
            else f"Latest({quoted(model_spec.name)})"
        )
        if model_spec.name != self.model_name:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: {wanted} (this server serves "
                f"{self.model_name!r})",
            )
        served = self.versions.get(model_spec.version.value) if pinned else self.versions.current
        if served is None:
            loaded = sorted(s.version for s in self.versions.statuses() if s.state == AVAILABLE)
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: {wanted} (loaded versions: {loaded or 'none'}, "
                f"policy {self.versions.policy})",
            )
        return served

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        served = self.served(request.model_spec)
        name = request.model_spec.signature_name or SERVING_DEFAULT
        if name not in served.signatures:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Serving signature key {quoted(name)} not found. Version {served.version} of "
                f"{self.model_name!r} has {sorted(served.signatures)}",
            )
        wanted = list(request.output_filter)
        seen = set()
        for key in wanted:
            if key in seen:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"duplicate output tensor alias: {bounded(key, 64)}",
                )
            seen.add(key)
        inputs = self._inputs(request, name, served.input_specs(name))
        try:
            outputs = served.signatures[name](**inputs)
        except tf.errors.InvalidArgumentError as err:
            raise _invalid_values(name, err.message) from err
        except UnicodeDecodeError as err:
            # TensorFlow's own message quoted the request's bytes (e.g. a tf.Example that
            # does not parse) and they are not UTF-8, so its Python wrapper could not decode
            # the error: decode it here, escaping those bytes.
            raise _invalid_values(name, err.object.decode("utf-8", "backslashreplace")) from err
        wanted = wanted or sorted(outputs)
        unknown = [o for o in wanted if o not in outputs]
        if unknown:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output_filter names {[bounded(o, 64) for o in unknown]}, not outputs of "
                f"{name!r} ({sorted(outputs)})",
            )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = served.version
        response.model_spec.signature_name = name
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key].numpy()))
        return response

    def metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        served = self.served(request.model_spec)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"metadata_field must be ['signature_def'], got {fields}",
            )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = served.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in served.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def model_status(self, spec) -> get_model_status_pb2.GetModelStatusResponse:
        if spec.name != self.model_name:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {quoted(spec.name)} (this server "
                f"serves {self.model_name!r})",
            )
        statuses = self.versions.statuses()
        if spec.HasField("version"):
            statuses = [s for s in statuses if s.version == spec.version.value]
        if not statuses:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find version {spec.version.value} of model {self.model_name!r}"
                if spec.HasField("version")
                else f"Could not find any versions of model {self.model_name!r}",
            )
        response = get_model_status_pb2.GetModelStatusResponse()
        for s in statuses:
            entry = response.model_version_status.add()
            entry.version = s.version
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(s.state)
            entry.status.SetInParent()  # TF Serving always reports a status, OK included
            if s.state == END and s.error:  # while LOADING (retries too) the status is OK
                entry.status.error_code = s.error_code
                entry.status.error_message = s.error
        return response

    def _inputs(self, request, signature: str, specs: dict, limit: bool = True) -> dict:
        names = list(request.inputs)
        missing = sorted(n for n in specs if n not in request.inputs)
        if missing:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {signature!r} is missing input(s) {missing}; it takes {sorted(specs)}",
            )
        extra = sorted(bounded(n, 64) for n in names if n not in specs)
        if extra:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {signature!r} has no input(s) {extra[:10]}; it takes {sorted(specs)}",
            )
        tensors = {}
        for name, spec in sorted(specs.items()):
            value = checked_array(
                name,
                request.inputs[name],
                spec,
                signature,
                self.max_candidates if limit else None,
            )
            tensors[name] = tf.constant(value, spec.dtype)
        return tensors

    def _warmup(self, served: ServedVersion, requests: list) -> None:
        for request in requests:
            name = request.model_spec.signature_name or SERVING_DEFAULT
            if name in served.signatures:
                served.signatures[name](
                    **self._inputs(request, name, served.input_specs(name), limit=False)
                )


def _invalid_values(signature: str, message: str) -> RequestError:
    """INVALID_ARGUMENT with the graph's own reason: an assertion's text, or the first line."""
    match = _ASSERTION.search(message)
    detail = match.group(1).strip() if match else message.splitlines()[0]
    return RequestError(
        grpc.StatusCode.INVALID_ARGUMENT, f"signature {signature!r}: {_clean(detail)}"
    )


def _clean(detail: str) -> str:
    """TF prints Assert's data as `[a] [b]`; join the pieces into one sentence."""
    pieces = re.findall(r"\[(.*?)\](?:\s|$)", detail, re.DOTALL)
    text = " ".join(p.strip() for p in pieces) if pieces else detail
    return text.replace("\\'", "'")


class _Undecodable:
    """A request whose bytes are not the message its method takes."""

    def __init__(self, message: str, error: Exception):
        self.message = message
        self.error = error


def _decoder(message_class):
    def decode(data: bytes):
        try:
            return message_class.FromString(data)
        except Exception as err:  # protobuf's DecodeError, or an unpaired UTF-8 string
            return _Undecodable(message_class.DESCRIPTOR.full_name, err)

    return decode


def _services(server: ModelServer) -> tuple:
    """TF Serving's PredictionService and ModelService over `server`, every method of them
    registered. gRPC's own registration logs a traceback for a message that does not parse
    and for a method a servicer lacks; here each is one log line and TF Serving's status."""
    implemented = {
        "Predict": server.predict,
        "GetModelMetadata": server.metadata,
        "GetModelStatus": lambda request: server.model_status(request.model_spec),
    }
    services = {
        PREDICTION_SERVICE: {
            "Classify": classification_pb2.ClassificationRequest,
            "Regress": regression_pb2.RegressionRequest,
            "Predict": predict_pb2.PredictRequest,
            "MultiInference": inference_pb2.MultiInferenceRequest,
            "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
        },
        MODEL_SERVICE: {
            "GetModelStatus": get_model_status_pb2.GetModelStatusRequest,
            "HandleReloadConfigRequest": model_management_pb2.ReloadConfigRequest,
        },
    }
    return tuple(
        grpc.method_handlers_generic_handler(
            service,
            {
                name: grpc.unary_unary_rpc_method_handler(
                    _method(f"{service}/{name}", implemented.get(name)),
                    request_deserializer=_decoder(request_class),
                    response_serializer=lambda response: response.SerializeToString(),
                )
                for name, request_class in methods.items()
            },
        )
        for service, methods in services.items()
    )


def _method(name: str, handler):
    def call(request, context):
        if isinstance(request, _Undecodable):
            # gRPC's C++ server (TF Serving's) answers INTERNAL when a message does not parse.
            log.warning(
                "%s: INTERNAL, the request is not a %s (%s)",
                name,
                request.message,
                bounded(request.error, 200),
            )
            context.abort(grpc.StatusCode.INTERNAL, f"Failed to parse request as {request.message}")
        if handler is None:
            log.info("%s: UNIMPLEMENTED", name)
            context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{name} is not implemented by this server: the model serves predict "
                "signatures (Predict)",
            )
        return _answer(context, lambda: handler(request))

    return call


def _answer(context, handler):
    try:
        return handler()
    except RequestError as err:
        context.abort(err.code, bounded(err.message))
    except Exception as err:  # anything else is the server's fault: say so, keep serving
        log.exception("request failed")
        context.abort(grpc.StatusCode.INTERNAL, bounded(f"{type(err).__name__}: {err}"))


@click.command()
@click.option("--model-base", required=True, help="Root of the model repository.")
@click.option("--model-name", default="mlpr", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8500, show_default=True, type=int, help="0: any free port.")
@click.option(
    "--rest-port",
    "--rest-api-port",
    "rest_api_port",
    default=None,
    type=int,
    help="Also serve TF Serving's REST API on this port (8501 in TF Serving's image; 0: any "
    "free port); off when not given.",
)
@click.option(
    "--poll-seconds",
    "--file-system-poll-wait-seconds",
    "poll_seconds",
    default=POLL_SECONDS,
    show_default=True,
    type=float,
    help="Seconds between looks at the repository for new or removed versions.",
)
@click.option("--max-candidates", default=DEFAULT_MAX_CANDIDATES, show_default=True, type=int)
@click.option("--workers", default=16, show_default=True, type=int)
@click.option(
    "--versions",
    "policy",
    default="latest:1",
    show_default=True,
    help="Versions to serve: 'latest:N' (the newest N) or 'all' (TF Serving's "
    "model_version_policy). A request may name any served version.",
)
@click.option("--max-load-retries", default=MAX_LOAD_RETRIES, show_default=True, type=int)
@click.option(
    "--max-request-bytes",
    default=MAX_REQUEST_BYTES,
    show_default=True,
    type=int,
    help="The largest gRPC message and REST body.",
)
@click.option(
    "--load-retry-interval-seconds", default=RETRY_INTERVAL_S, show_default=True, type=float
)
def main(
    model_base,
    model_name,
    host,
    port,
    rest_api_port,
    poll_seconds,
    max_candidates,
    workers,
    policy,
    max_load_retries,
    load_retry_interval_seconds,
    max_request_bytes,
) -> None:
    """Serve MODEL_BASE/MODEL_NAME over TF Serving's gRPC API."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        version_policy = VersionPolicy.parse(policy)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--versions") from err
    server = ModelServer(
        model_base,
        model_name,
        max_candidates,
        workers,
        version_policy,
        max_load_retries,
        load_retry_interval_seconds,
        max_request_bytes,
    )
    bound = server.start(host, port, poll_seconds)
    rest = (
        ""
        if rest_api_port is None
        else f", REST on {host}:{server.start_rest(host, rest_api_port)}"
    )
    current = server.versions.current
    click.echo(
        f"serving {model_name!r} version {current.version if current else 'none yet'} "
        f"on {host}:{bound}{rest}",
        err=True,
    )
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
