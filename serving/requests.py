"""PredictRequest construction and response decoding shared by the client, the warmup
requests and the tests (TF Serving's own protos, from tensorflow-serving-api)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2


def tensor_proto(values) -> tf.compat.v1.TensorProto:
    """Strings (str or bytes) -> DT_STRING, numbers -> DT_FLOAT; a scalar stays a scalar."""
    array = np.asarray(values)
    if array.dtype.kind in "USO":
        return tf.make_tensor_proto(array.astype(object), dtype=tf.string)
    return tf.make_tensor_proto(array.astype(np.float32), dtype=tf.float32)


def predict_request(
    model_name: str,
    signature_name: str,
    inputs: Mapping[str, Sequence],
    version: int | None = None,
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, values in inputs.items():
        request.inputs[name].CopyFrom(tensor_proto(values))
    return request


def decode_outputs(response) -> dict[str, np.ndarray]:
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
