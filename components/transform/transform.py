"""The transform Beam job: analyze the training split, transform every split.

Input: ingest's raw splits, Parquet files read as Arrow record batches
(`raw_splits.ReadListBatches`): no tf.Example is decoded on the way.
Output: a TFT output directory (transform_fn/ + transformed_metadata/, loadable with
`tft.TFTransformOutput`) and gzip TFRecords of transformed tf.Examples per split.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Sequence

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

from components import raw_splits, tfrecords
from components.beam_runner import (
    TRANSFORM_MIN_BYTES_PER_WORKER,
    TRANSFORM_WORKER_BYTES,
    local_workers,
    make_pipeline,
)
from components.step_log import progress
from components.transform.preprocessing import preprocessing_fn
from contract import layout
from contract import schema as S
from contract.features import raw_feature_spec


class TransformError(ValueError):
    """The transform cannot run on these inputs (the message says why)."""


def load_raw_schema(examples_dir: str) -> S.RawSchema:
    path = os.path.join(examples_dir, layout.SCHEMA_FILE)
    if not os.path.exists(path):
        raise TransformError(f"{examples_dir} has no {layout.SCHEMA_FILE}: is it an ingest output?")
    return S.RawSchema.load(path)


def _check_inputs(examples_dir: str) -> None:
    for split in S.SPLITS:
        if not tf.io.gfile.glob(layout.raw_split_pattern(examples_dir, split)):
            raise TransformError(
                f"no {split} split in {examples_dir} "
                f"(expected {layout.raw_split_pattern(examples_dir, split)})"
            )


def _train_shard_sizes(examples_dir: str) -> list[int]:
    """The sizes of the train split's files: the local job runs on at most one worker per
    file (`beam_runner.local_workers`)."""
    shards = tf.io.gfile.glob(layout.raw_split_pattern(examples_dir, "train"))
    return [tf.io.gfile.stat(path).length for path in shards]


def _framed(record_batch, _unary, encoder=None) -> bytes:
    return tfrecords.frame(encoder.encode(record_batch))


def run_transform(
    examples_dir: str,
    transform_output_dir: str,
    transformed_examples_dir: str,
    beam_args: Sequence[str] = (),
    temp_dir: str | None = None,
) -> None:
    """Analyze the train split of `examples_dir`, write the transform graph and every split.
    What an earlier attempt left in the output folders (a killed step, retried) is removed
    first, so no shard of it mixes with this one's.

    Without a runner in `beam_args` the job runs locally, on as many processes as the train
    split's shards keep busy (`beam_runner.local_workers`)."""
    _check_inputs(examples_dir)
    raw_schema = load_raw_schema(examples_dir)
    temp_dir = temp_dir or tempfile.mkdtemp(prefix="tft-")
    clear_earlier_outputs(transform_output_dir, transformed_examples_dir)

    tf.io.gfile.makedirs(transform_output_dir)
    # The raw schema travels with the transform graph: the export needs it for its signatures.
    tf.io.gfile.copy(
        os.path.join(examples_dir, layout.SCHEMA_FILE),
        os.path.join(transform_output_dir, layout.SCHEMA_FILE),
        overwrite=True,
    )
    progress(
        "analyzing the train split, then transforming "
        + ", ".join(S.SPLITS)
        + " (one Beam pipeline)"
    )
    workers = local_workers(
        _train_shard_sizes(examples_dir), TRANSFORM_WORKER_BYTES, TRANSFORM_MIN_BYTES_PER_WORKER
    )
    with make_pipeline(beam_args, workers) as pipeline, tft_beam.Context(temp_dir=temp_dir):
        build_transform(
            pipeline, examples_dir, transform_output_dir, transformed_examples_dir, raw_schema
        )
    progress("wrote the transform graph and the transformed splits")


def clear_earlier_outputs(transform_output_dir: str, transformed_examples_dir: str) -> None:
    """Remove the transform graph and the transformed splits' shards found there."""
    for name in (
        tft.TFTransformOutput.TRANSFORM_FN_DIR,
        tft.TFTransformOutput.TRANSFORMED_METADATA_DIR,
    ):
        path = os.path.join(transform_output_dir, name)
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path)
    for split in S.SPLITS:
        for shard in tf.io.gfile.glob(layout.split_pattern(transformed_examples_dir, split)):
            tf.io.gfile.remove(shard)


def build_transform(
    pipeline: beam.Pipeline,
    examples_dir: str,
    transform_output_dir: str,
    transformed_examples_dir: str,
    raw_schema: S.RawSchema,
) -> None:
    """Add the analyze and transform steps to `pipeline` (inside a `tft_beam.Context`)."""
    schema_proto = schema_utils.schema_from_feature_spec(raw_feature_spec(raw_schema))
    fn = functools.partial(preprocessing_fn, raw_schema=raw_schema)
    # The batches' columns are one-value lists, the tensors those of the raw feature spec:
    # what tf.Examples of the same rows would give.
    config = raw_splits.tensor_adapter_config(raw_schema, schema_proto)

    def read(split: str, label: str):
        pattern = layout.raw_split_pattern(examples_dir, split)
        return pipeline | label >> raw_splits.ReadListBatches(pattern)

    raw_train = read("train", "ReadTrain")
    transform_fn = (raw_train, config) | "Analyze" >> tft_beam.AnalyzeDataset(fn)
    _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(transform_output_dir)

    for split in S.SPLITS:
        # Every split, train included, is read again for the transform (a Parquet read is
        # cheap): reusing the analyzed train PCollection would make the local runner hold all
        # of it in memory until the analysis (the transform's side input) is done.
        raw = read(split, f"Read{split}")
        transformed, metadata = (
            (raw, config),
            transform_fn,
        ) | f"Transform{split}" >> tft_beam.TransformDataset(output_record_batches=True)
        encoder = metadata.deferred_metadata | f"Encoder{split}" >> beam.Map(
            lambda m: RecordBatchToExamplesEncoder(m.schema)
        )
        _ = (
            transformed
            | f"Encode{split}" >> beam.MapTuple(_framed, encoder=beam.pvalue.AsSingleton(encoder))
            | f"Write{split}"
            >> tfrecords.WriteTFRecordBlocks(
                layout.split_prefix(transformed_examples_dir, split), layout.RECORD_SUFFIX
            )
        )
