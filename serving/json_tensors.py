"""A JSON predict body as the PredictRequest a gRPC client would send, decoded as TF
Serving's util/json_tensor.cc decodes it, with the request limit applied while decoding.

TF Serving's rules (FillPredictRequestFromJson):

- `{"instances": [...]}` (row format): a list of objects naming every input, or, when the
  signature has one input, a list of its values (a `{"b64": ...}` object is a value, not a
  named input). Each instance is one candidate.
- `{"inputs": {...}}` (columnar): an object holding each input of the signature; names the
  signature does not take are ignored. With one input, the value itself (or `{"b64": ...}`)
  may stand for the object.
- a tensor's shape is the length of each list level, read along first elements; every list
  of a level must have that length, and values sit at the deepest level only.
- strings are JSON strings, bytes `{"b64": "<base64>"}`; numbers are JSON numbers (NaN and
  Infinity included); true and false are not numbers.

The element count of every input (at most `max_entries`, the candidate limit) is read from
the list lengths before any value is converted, and a list is measured before it is walked,
so the work after the parse stays proportional to what the server accepts: a 1 MB body of
200,000 prices is refused after one `len()`. The parse itself is bounded by the body limit
(serving/rest.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import math

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2

from serving.request_checks import RequestError, bounded, quoted

MAX_DEPTH = 8  # nesting of a JSON tensor value; the signatures take rank <= 1


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _shown(value) -> str:
    """A JSON value for an error message, cut short (it may be megabytes long)."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object with keys {sorted(bounded(k, 32) for k in value)[:5]}"
    return bounded(json.dumps(value), 64)


def is_b64(value) -> bool:
    """`{"b64": "<string>"}` and nothing else (IsValBase64Object)."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_named(value) -> bool:
    return isinstance(value, dict) and not is_b64(value)


def dense_shape(name: str, value) -> list[int]:
    """The shape a JSON value declares (GetDenseTensorShape): each list level's length,
    following first elements, no deeper than MAX_DEPTH."""
    dims = []
    while isinstance(value, list):
        if len(dims) == MAX_DEPTH:
            raise _invalid(f"input {quoted(name)} nests lists more than {MAX_DEPTH} deep")
        dims.append(len(value))
        if not value:
            break
        value = value[0]
    return dims


def _check_entries(name: str, dims: list[int], max_entries: int | None) -> None:
    entries = math.prod(dims)
    if max_entries is not None and entries > max_entries:
        raise _invalid(
            f"request too large: input {quoted(name)} has {entries} entries, at most "
            f"{max_entries} per request; split the candidates over requests"
        )


def _string(name: str, value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"input {quoted(name)}: 'b64' holds no valid base64") from None
    raise _invalid(
        f'input {quoted(name)} takes strings (or {{"b64": ...}} for bytes), got {_shown(value)}'
    )


def _number(name: str, value, dtype: tf.DType) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"input {quoted(name)} takes numbers ({dtype.name}), got {_shown(value)}")
    try:
        return float(value)
    except OverflowError:  # an integer literal beyond float64: infinite, as rapidjson reads it
        return math.inf if value > 0 else -math.inf


def to_tensor_proto(name: str, value, dtype: tf.DType, max_entries: int | None = None):
    """A JSON value as the TensorProto of `dtype` (FillTensorProto), refused when it holds
    more than `max_entries` values, before any of them is converted."""
    dims = dense_shape(name, value)
    _check_entries(name, dims, max_entries)
    rank = len(dims)
    strings = dtype == tf.string
    values: list = []

    def fill(item, level: int) -> None:
        if not isinstance(item, list):
            if level != rank:
                raise _invalid(
                    f"input {quoted(name)} is not a rectangular array: a value at depth "
                    f"{level}, expected {rank}"
                )
            values.append(_string(name, item) if strings else _number(name, item, dtype))
            return
        if level >= rank or len(item) != dims[level]:  # measured before it is walked
            raise _invalid(
                f"input {quoted(name)} is not a rectangular array: a list of {len(item)} at "
                f"depth {level}, expected {dims[level] if level < rank else 'a value'}"
            )
        for element in item:
            fill(element, level + 1)

    fill(value, 0)  # recursion depth <= MAX_DEPTH
    if dtype == tf.string:
        array = np.empty(len(values), dtype=object)
        array[:] = values
    else:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused by the model
            array = np.array(values, dtype=np.float64).astype(dtype.as_numpy_dtype)
    return tf.make_tensor_proto(array.reshape(dims), dtype=dtype)


def _row_columns(instances, names: list[str], max_entries: int | None) -> dict:
    """The row format's instances as one list per input (FillTensorMapFromInstancesList)."""
    if not isinstance(instances, list):
        raise _invalid("Expecting 'instances' to be an list/array")
    if not instances:
        raise _invalid("No values in 'instances' array")
    if max_entries is not None and len(instances) > max_entries:
        raise _invalid(
            f"request too large: 'instances' has {len(instances)} entries, at most "
            f"{max_entries} per request; split the candidates over requests"
        )
    if not isinstance(instances[0], dict) and len(names) > 1:
        raise _invalid(
            "instances is a plain list, but expecting list of objects as multiple input "
            f"tensors required as per tensorinfo_map: {names}"
        )
    if not _is_named(instances[0]):
        for k, instance in enumerate(instances):
            if _is_named(instance):
                raise _invalid(f"Expecting value/list but got object at item {k} of input list")
        return {names[0]: instances}
    columns: dict[str, list] = {name: [] for name in names}
    for k, instance in enumerate(instances):
        if not _is_named(instance):
            raise _invalid(f"Expecting object but got {_shown(instance)} at item {k} of input list")
        if instance.keys() != columns.keys():
            unknown = sorted(bounded(n, 64) for n in instance if n not in columns)
            raise _invalid(
                f"instance [{k}] names {sorted(bounded(n, 64) for n in instance)[:10]}"
                + (f" (not inputs: {unknown[:5]})" if unknown else "")
                + f": every instance must name the same inputs, the signature's {names}"
            )
        for name in names:
            columns[name].append(instance[name])
    return columns


def predict_request(
    spec: model_pb2.ModelSpec, body: dict, input_specs: dict, max_entries: int | None
) -> tuple[predict_pb2.PredictRequest, bool]:
    """(PredictRequest, row format?) from a parsed JSON object, `input_specs` being the
    signature's inputs (name -> TensorSpec)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.CopyFrom(spec)
    if "signature_name" in body:
        request.model_spec.signature_name = body["signature_name"]  # checked by the caller
    rows = "instances" in body
    if rows and "inputs" in body:
        raise _invalid(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"
        )
    if not rows and "inputs" not in body:
        raise _invalid("Missing 'inputs' or 'instances' key")
    names = sorted(input_specs)
    if rows:
        columns = _row_columns(body["instances"], names, max_entries)
    else:
        inputs = body["inputs"]
        if not isinstance(inputs, dict) or is_b64(inputs):
            if len(names) > 1:
                raise _invalid(
                    "inputs is a plain value/list, but expecting an object as multiple input "
                    f"tensors required as per tensorinfo_map: {names}"
                )
            columns = {names[0]: inputs}
        else:
            for name in names:
                if name not in inputs:
                    raise _invalid(f"Missing named input: {name} in 'inputs' object.")
            columns = {name: inputs[name] for name in names}  # other names are ignored
    for name in names:
        request.inputs[name].CopyFrom(
            to_tensor_proto(name, columns[name], input_specs[name].dtype, max_entries)
        )
    return request, rows
