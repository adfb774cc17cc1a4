"""TFRecord shards written and read a block of records at a time (the transform's
transformed examples, and raw splits exported as tf.Examples: `raw_splits.export_tfrecords`).

`WriteTFRecordBlocks` is Beam's TFRecord sink for a PCollection whose elements are blocks of
already framed records (`frame`), so the sink's per-element work (and the compressor's call)
is paid once per block instead of once per example. The files are plain TFRecord files
(gzip when the suffix says so), as `beam.io.WriteToTFRecord` writes them.

`write_records` writes one such file outside Beam; `read_records` reads one back.

The record format (TensorFlow's `tf.io.TFRecordWriter`): for each record, its length as a
little-endian uint64, the masked CRC-32C of those 8 bytes (uint32), the data, and the masked
CRC-32C of the data (uint32).
"""

from __future__ import annotations

import gzip
import io
import itertools
import struct
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
import google_crc32c
from apache_beam import coders
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

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


GZIP_LEVEL = 1  # zlib's fastest: several times quicker than its default 6, files ~15% larger


class _GzipOver:
    """A gzip stream over a file that it closes too (gzip.GzipFile leaves a given file open)."""

    def __init__(self, raw) -> None:
        self._raw = raw
        self._gzip = gzip.GzipFile(
            filename="", fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0
        )

    def write(self, data: bytes) -> None:
        self._gzip.write(data)

    def close(self) -> None:
        self._gzip.close()
        self._raw.close()


class _FramedRecordsSink(FileBasedSink):
    """Beam's file sink for blocks of framed records; a file whose name ends in .gz is
    compressed at `GZIP_LEVEL` (Beam's own gzip writer has no level), with mtime 0 in its
    header so that the same records give the same bytes."""

    def __init__(self, file_path_prefix: str, file_name_suffix: str) -> None:
        super().__init__(
            file_path_prefix,
            coder=coders.BytesCoder(),
            file_name_suffix=file_name_suffix,
            mime_type="application/octet-stream",
            compression_type=CompressionTypes.UNCOMPRESSED,
        )
        self._gzip = file_name_suffix.endswith(".gz")

    def open(self, temp_path: str):
        raw = super().open(temp_path)
        return _GzipOver(raw) if self._gzip else raw

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


def write_records(path: str, records: Iterable[bytes], block: int = 4096) -> None:
    """Write `records` as one TFRecord file (gzip, as the sink compresses it, when the name
    ends in .gz), framed `block` records at a time."""
    raw = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
    out = _GzipOver(raw) if path.endswith(".gz") else raw
    try:
        records = iter(records)
        while part := list(itertools.islice(records, block)):
            out.write(frame(part))
    finally:
        out.close()


class CorruptRecord(ValueError):
    """A TFRecord file whose framing or checksums are wrong (a truncated or damaged file)."""


def read_records(path: str) -> Iterator[bytes]:
    """The records of one TFRecord file (gzip when its name ends in .gz), checksums checked."""
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw
    with io.BufferedReader(stream, buffer_size=1 << 20) as fh:
        index = 0
        while header := fh.read(12):
            length_bytes = header[:8]
            if len(header) < 12 or struct.unpack("<I", header[8:])[0] != _masked_crc(length_bytes):
                raise CorruptRecord(f"{path}: record {index} has a damaged length")
            (length,) = struct.unpack("<Q", length_bytes)
            data, footer = fh.read(length), fh.read(4)
            if len(data) < length or len(footer) < 4:
                raise CorruptRecord(f"{path}: record {index} is cut short")
            if struct.unpack("<I", footer)[0] != _masked_crc(data):
                raise CorruptRecord(f"{path}: record {index} fails its checksum")
            yield data
            index += 1
