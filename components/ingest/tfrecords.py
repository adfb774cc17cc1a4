"""TFRecord shards written a block of records at a time.

`WriteTFRecordBlocks` is Beam's TFRecord sink for a PCollection whose elements are blocks of
already framed records (`frame`), so the sink's per-element work (and the compressor's call)
is paid once per block instead of once per example. The files are plain TFRecord files
(gzip when the suffix says so), as `beam.io.WriteToTFRecord` writes them.

The record format (TensorFlow's `tf.io.TFRecordWriter`): for each record, its length as a
little-endian uint64, the masked CRC-32C of those 8 bytes (uint32), the data, and the masked
CRC-32C of the data (uint32).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import apache_beam as beam
import google_crc32c
from apache_beam import coders
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes

_MASK_DELTA = 0xA282EAD8


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(records: Sequence[bytes]) -> bytes:
    """Records in the TFRecord format, one after the other."""
    parts = []
    for record in records:
        length = struct.pack("<Q", len(record))
        parts += (length, struct.pack("<I", _masked_crc(length)), record)
        parts.append(struct.pack("<I", _masked_crc(record)))
    return b"".join(parts)


class _FramedRecordsSink(FileBasedSink):
    def __init__(self, file_path_prefix: str, file_name_suffix: str) -> None:
        super().__init__(
            file_path_prefix,
            coder=coders.BytesCoder(),
            file_name_suffix=file_name_suffix,
            mime_type="application/octet-stream",
            compression_type=CompressionTypes.AUTO,
        )

    def write_encoded_record(self, file_handle, encoded_value: bytes) -> None:
        file_handle.write(encoded_value)


class WriteTFRecordBlocks(beam.PTransform):
    """Blocks of framed records (bytes from `frame`) -> TFRecord shards
    `<prefix>-SSSSS-of-NNNNN<suffix>`."""

    def __init__(self, file_path_prefix: str, file_name_suffix: str = "", label=None) -> None:
        super().__init__(label)
        self._sink = _FramedRecordsSink(file_path_prefix, file_name_suffix)

    def expand(self, blocks):
        return blocks | beam.io.Write(self._sink)
