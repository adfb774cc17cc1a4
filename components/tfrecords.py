"""TFRecord shards written and read a block of records at a time (ingest's examples,
transform's raw and transformed examples).

`WriteTFRecordBlocks` is Beam's TFRecord sink for a PCollection whose elements are blocks of
already framed records (`frame`), so the sink's per-element work (and the compressor's call)
is paid once per block instead of once per example. The files are plain TFRecord files
(gzip when the suffix says so), as `beam.io.WriteToTFRecord` writes them.

`ReadExampleBatches` reads each file of a pattern in one pass and decodes its tf.Examples in
batches into Arrow record batches with tfx_bsl's decoder (`ExamplesToRecordBatchDecoder`, the
one TFXIO's `TFExampleRecord` uses), the input tensorflow-transform takes with the TFXIO's
`TensorAdapterConfig`. Beam's TFRecord source hands on one element per record instead.

The record format (TensorFlow's `tf.io.TFRecordWriter`): for each record, its length as a
little-endian uint64, the masked CRC-32C of those 8 bytes (uint32), the data, and the masked
CRC-32C of the data (uint32).
"""

from __future__ import annotations

import gzip
import io
import struct
from collections.abc import Iterator, Sequence

import apache_beam as beam
import google_crc32c
import pyarrow as pa
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


class _DecodeFile(beam.DoFn):
    def __init__(self, serialized_schema: bytes, batch_size: int) -> None:
        self._schema, self._batch_size = serialized_schema, batch_size

    def setup(self) -> None:
        from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

        self._decoder = ExamplesToRecordBatchDecoder(self._schema)

    def process(self, path: str) -> Iterator[pa.RecordBatch]:
        batch = []
        for record in read_records(path):
            batch.append(record)
            if len(batch) == self._batch_size:
                yield self._decoder.DecodeBatch(batch)
                batch = []
        if batch:
            yield self._decoder.DecodeBatch(batch)


def _matching(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


class ReadExampleBatches(beam.PTransform):
    """A file pattern of gzip TFRecords of tf.Examples -> pa.RecordBatches of up to
    `batch_size` rows, decoded with the schema (a tensorflow_metadata Schema proto); the files
    are spread over workers."""

    def __init__(self, file_pattern: str, schema, batch_size: int = 4096, label=None) -> None:
        super().__init__(label)
        self._pattern, self._batch_size = file_pattern, batch_size
        self._schema = schema.SerializeToString()

    def expand(self, pipeline):
        return (
            pipeline
            | "Pattern" >> beam.Create([self._pattern])
            | "Files" >> beam.FlatMap(_matching)
            | "Spread" >> beam.Reshuffle()
            | "Decode" >> beam.ParDo(_DecodeFile(self._schema, self._batch_size))
        )
