"""A local gRPC model server speaking TF Serving's API, for development and tests.

Production serves the model with the official TF Serving image (k8s/). This server answers
the same protos over the same model repository, so the client, the benchmarks and the tests
run where no `tensorflow_model_server` binary exists:

- `tensorflow.serving.PredictionService`: Predict, GetModelMetadata (signature_def);
- `tensorflow.serving.ModelService`: GetModelStatus;
- `grpc.health.v1.Health`: SERVING once a version is loaded.

It serves the newest version of one model, polls for newer ones and switches without failing
requests in flight. Malformed requests get INVALID_ARGUMENT with a message naming the input;
unknown models or versions get NOT_FOUND. It binds to 127.0.0.1 unless told otherwise.

    python -m serving.server --model-base runs/serving --model-name mlpr --port 8500
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
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import tfs_config
from serving.signatures import SERVING_DEFAULT
from serving.versions import ServedVersion, VersionManager

log = logging.getLogger(__name__)

# TF Serving never splits a request across batches: no more candidates than one CPU batch.
DEFAULT_MAX_CANDIDATES = tfs_config.BATCHING_PROFILES["cpu"].max_batch_size
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
_ASSERTION = re.compile(r"assertion failed: (.*?)(?:\n|$)", re.DOTALL)


class RequestError(Exception):
    """A request the server refuses, with the gRPC status code to answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ModelServer:
    """The servicers, the version manager and the gRPC server around them.

    Args:
        model_base: root of the model repository.
        model_name: the model served (its directory under model_base).
        max_candidates: largest number of entries an input may carry in one request.
        workers: request threads.
    """

    def __init__(
        self,
        model_base: str,
        model_name: str = "mlpr",
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        workers: int = 16,
    ):
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
        self.model_name = model_name
        self.max_candidates = max_candidates
        self.versions = VersionManager(
            model_base, model_name, warmup=self._warmup, on_switch=lambda _: self._set_health(True)
        )
        self.health = health.HealthServicer()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(self), self._server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port: int | None = None

    def start(self, host: str = "127.0.0.1", port: int = 8500, poll_seconds: float = 2.0) -> int:
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

    def stop(self, grace: float = 1.0) -> None:
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
        """The version a request's model_spec names, or NOT_FOUND."""
        if model_spec.name != self.model_name:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"model {model_spec.name!r} is not served here (this server serves "
                f"{self.model_name!r})",
            )
        current = self.versions.current
        if current is None:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                f"no version of {self.model_name!r} is loaded yet under {self.versions.model_root}",
            )
        if model_spec.HasField("version_label"):
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"version label {model_spec.version_label!r} of {self.model_name!r} is unknown "
                "(this server has no labels; it serves the newest version)",
            )
        if model_spec.HasField("version") and model_spec.version.value != current.version:
            raise RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"version {model_spec.version.value} of {self.model_name!r} is not served "
                f"(serving version {current.version})",
            )
        return current

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        served = self.served(request.model_spec)
        name = request.model_spec.signature_name or SERVING_DEFAULT
        if name not in served.signatures:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {name!r} not found in version {served.version} of "
                f"{self.model_name!r}; it has {sorted(served.signatures)}",
            )
        inputs = self._inputs(request, name, served.input_specs(name))
        try:
            outputs = served.signatures[name](**inputs)
        except tf.errors.InvalidArgumentError as err:
            match = _ASSERTION.search(err.message)
            detail = match.group(1).strip() if match else err.message.splitlines()[0]
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {name!r}: {_clean(detail)}",
            ) from err
        wanted = list(request.output_filter) or sorted(outputs)
        unknown = [o for o in wanted if o not in outputs]
        if unknown:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output_filter names {unknown}, not outputs of {name!r} ({sorted(outputs)})",
            )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = served.version
        response.model_spec.signature_name = name
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key].numpy()))
        return response

    def _inputs(self, request, signature: str, specs: dict, limit: bool = True) -> dict:
        missing = sorted(n for n in specs if n not in request.inputs)
        if missing:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {signature!r} is missing input(s) {missing}; it takes {sorted(specs)}",
            )
        extra = sorted(n for n in request.inputs if n not in specs)
        if extra:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {signature!r} has no input(s) {extra}; it takes {sorted(specs)}",
            )
        tensors = {}
        for name, spec in sorted(specs.items()):
            proto = request.inputs[name]
            expected = spec.dtype.as_datatype_enum
            if proto.dtype != expected:
                got = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "DT_INVALID"
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {name!r} of {signature!r} must be {spec.dtype.name}, got {got}",
                )
            try:
                value = tf.make_ndarray(proto)
            except Exception as err:  # a malformed TensorProto (content vs shape)
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"input {name!r} is malformed: {err}"
                ) from err
            if spec.shape.rank is not None and value.ndim != spec.shape.rank:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {name!r} of {signature!r} must have shape {spec.shape} "
                    f"(one entry per candidate), got {list(value.shape)}",
                )
            if limit and value.size > self.max_candidates:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"request too large: input {name!r} has {value.size} entries, at most "
                    f"{self.max_candidates} per request; split the candidates over requests",
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


def _clean(detail: str) -> str:
    """TF prints Assert's data as `[a] [b]`; join the pieces into one sentence."""
    pieces = re.findall(r"\[(.*?)\](?:\s|$)", detail, re.DOTALL)
    text = " ".join(p.strip() for p in pieces) if pieces else detail
    return text.replace("\\'", "'")


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: ModelServer):
        self.server = server

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        return _answer(context, lambda: self.server.predict(request))

    def GetModelMetadata(self, request, context):  # noqa: N802
        def metadata():
            served = self.server.served(request.model_spec)
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"metadata_field must be ['signature_def'], got {fields}",
                )
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = self.server.model_name
            response.model_spec.version.value = served.version
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for name, signature_def in served.signature_defs.items():
                signature_map.signature_def[name].CopyFrom(signature_def)
            response.metadata["signature_def"].Pack(signature_map)
            return response

        return _answer(context, metadata)


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: ModelServer):
        self.server = server

    def GetModelStatus(self, request, context):  # noqa: N802
        def status():
            served = self.server.served(request.model_spec)
            response = get_model_status_pb2.GetModelStatusResponse()
            entry = response.model_version_status.add()
            entry.version = served.version
            entry.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return response

        return _answer(context, status)


def _answer(context, handler):
    try:
        return handler()
    except RequestError as err:
        context.abort(err.code, err.message)
    except Exception as err:  # anything else is the server's fault: say so, keep serving
        log.exception("request failed")
        context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")


@click.command()
@click.option("--model-base", required=True, help="Root of the model repository.")
@click.option("--model-name", default="mlpr", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8500, show_default=True, type=int, help="0: any free port.")
@click.option("--poll-seconds", default=2.0, show_default=True, type=float)
@click.option("--max-candidates", default=DEFAULT_MAX_CANDIDATES, show_default=True, type=int)
@click.option("--workers", default=16, show_default=True, type=int)
def main(model_base, model_name, host, port, poll_seconds, max_candidates, workers) -> None:
    """Serve MODEL_BASE/MODEL_NAME/<newest version> over TF Serving's gRPC API."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = ModelServer(model_base, model_name, max_candidates, workers)
    bound = server.start(host, port, poll_seconds)
    current = server.versions.current
    click.echo(
        f"serving {model_name!r} version {current.version if current else 'none yet'} "
        f"on {host}:{bound}",
        err=True,
    )
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
