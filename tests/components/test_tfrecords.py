"""TFRecords framed a block at a time read back as TensorFlow writes and reads them."""

from __future__ import annotations

import glob
from pathlib import Path

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline

from components.tfrecords import (
    CorruptRecord,
    WriteTFRecordBlocks,
    frame,
    read_records,
    write_records,
)


def test_framing_is_tensorflows(tmp_path):
    records = [b"", b"a", b"x" * 300, bytes(range(256))]
    path = tmp_path / "tf.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    assert frame(records) == path.read_bytes()


def test_blocks_are_written_as_gzip_shards(tmp_path):
    blocks = [[b"one", b"two"], [], [b"three"]]
    with TestPipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create([frame(b) for b in blocks])
            | WriteTFRecordBlocks(str(tmp_path / "data"), ".tfrecord.gz")
        )
    files = sorted(glob.glob(str(tmp_path / "data-*-of-*.tfrecord.gz")))
    assert files
    read = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(read) == [b"one", b"three", b"two"]
    header = Path(files[0]).read_bytes()[:10]
    # No file name (flags 0) and mtime 0: the same records give the same bytes.
    assert header[3] == 0 and header[4:8] == b"\0\0\0\0"


def test_records_read_back_as_tensorflow_wrote_them(tmp_path):
    records = [f"record {i}".encode() * (i % 7) for i in range(1000)]
    path = str(tmp_path / "data.tfrecord.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)
    assert list(read_records(path)) == records
    plain = tmp_path / "data.tfrecord"
    plain.write_bytes(frame(records[:3]))
    assert list(read_records(str(plain))) == records[:3]
    plain.write_bytes(frame(records[:3])[:-2])  # cut inside the last record's checksum
    with pytest.raises(CorruptRecord, match="record 2 is cut short"):
        list(read_records(str(plain)))
    damaged = bytearray(frame(records[1:4]))
    damaged[14] ^= 0xFF  # a byte of the first record's data
    plain.write_bytes(bytes(damaged))
    with pytest.raises(CorruptRecord, match="record 0 fails its checksum"):
        list(read_records(str(plain)))


def test_write_records_writes_a_file_tensorflow_reads(tmp_path):
    records = [f"record {i}".encode() for i in range(10)]
    write_records(str(tmp_path / "out" / "a.tfrecord.gz"), iter(records), block=3)
    write_records(str(tmp_path / "out" / "b.tfrecord"), iter(records), block=3)
    read = [
        r.numpy()
        for r in tf.data.TFRecordDataset(
            str(tmp_path / "out" / "a.tfrecord.gz"), compression_type="GZIP"
        )
    ]
    assert read == records
    assert list(read_records(str(tmp_path / "out" / "b.tfrecord"))) == records
