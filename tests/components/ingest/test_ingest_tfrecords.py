"""TFRecords framed a block at a time read back as TensorFlow writes and reads them."""

from __future__ import annotations

import glob

import apache_beam as beam
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline

from components.ingest.tfrecords import WriteTFRecordBlocks, frame


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
