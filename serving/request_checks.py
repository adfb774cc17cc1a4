"""What the local server checks in a request before it builds any tensor from it, and the
bounded, valid UTF-8 text of every error it answers.

A TensorProto declares its shape and dtype apart from its values, and building the array
trusts them: a 1 KB request may declare a [3e7] string tensor (TensorFlow fills it by
repeating the last value), an unknown dtype enum, or a rank-33 shape, which crashes
TensorFlow itself. So the declared dtype, rank and element count are read from the proto
and checked against the signature and the request limit first; only then is the array
built.
"""

from __future__ import annotations

import math

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

# The largest request, over gRPC (a message) and REST (a body): a request at the candidate
# limit (1,024) with every raw product field is about 0.3 MB of row-format JSON, less as a
# proto; 4 MiB is gRPC's own default. TF Serving sets no limit.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_CHARS = 1024  # errors longer than this are cut, with an ellipsis
MAX_VALUE_CHARS = 64  # a request value quoted in an error is cut to this


class RequestError(Exception):
    """A request the server refuses, with the gRPC status code to answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def bounded(text, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` (str or bytes) as valid UTF-8 of at most `limit` characters: undecodable bytes
    and lone surrogates are escaped, and a longer text is cut with "…"."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(value) -> str:
    """A request value for an error message: repr-quoted and cut to MAX_VALUE_CHARS."""
    return repr(bounded(value, MAX_VALUE_CHARS))


def dtype_name(enum: int) -> str:
    """`DT_FLOAT`, ..., or the bare number of an enum TensorFlow does not know."""
    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return f"unknown dtype enum {enum}"


def declared_shape(name: str, proto) -> list[int]:
    """The shape a TensorProto declares, checked to be fully known and non-negative."""
    if proto.tensor_shape.unknown_rank:
        raise _invalid(f"input {name!r} must declare its shape (unknown_rank is set)")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise _invalid(f"input {name!r} declares a negative dimension: {dims[:8]}")
    return dims


def checked_array(
    name: str, proto, spec: tf.TensorSpec, signature: str, max_entries: int | None
) -> np.ndarray:
    """The request's value of input `name` as a numpy array, after its dtype, rank and
    element count (at most `max_entries`; None: no limit) are checked on the proto.

    A signature input of unknown rank takes a scalar or a vector (the query)."""
    expected = spec.dtype.as_datatype_enum
    if proto.dtype != expected:
        raise _invalid(
            f"input {name!r} of {signature!r} must be {spec.dtype.name}, got "
            f"{dtype_name(proto.dtype).removeprefix('DT_').lower()}"
        )
    dims = declared_shape(name, proto)
    rank = spec.shape.rank
    if rank is not None and len(dims) != rank:
        raise _invalid(
            f"input {name!r} of {signature!r} must have shape {spec.shape} "
            f"(one entry per candidate), got rank {len(dims)} {dims[:8]}"
        )
    if rank is None and len(dims) > 1:
        raise _invalid(
            f"input {name!r} of {signature!r} must be a scalar or a vector, got rank "
            f"{len(dims)} {dims[:8]}"
        )
    entries = math.prod(dims)
    if max_entries is not None and entries > max_entries:
        raise _invalid(
            f"request too large: input {name!r} has {entries} entries, at most "
            f"{max_entries} per request; split the candidates over requests"
        )
    try:
        return tf.make_ndarray(proto)
    except Exception as err:  # values that do not fit the declared shape
        raise _invalid(f"input {name!r} is malformed: {bounded(err, 200)}") from err


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)
