"""The transform reads ingest's Parquet splits as record batches (components/raw_splits.py)
and gives what it gave when it decoded tf.Example TFRecords: the same vocabularies and the
same transformed values, row for row, to the bit."""

from __future__ import annotations

import functools

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder
from tfx_bsl.public import tfxio

from components import raw_splits, tfrecords
from components.beam_runner import make_pipeline
from components.transform.preprocessing import preprocessing_fn
from components.transform.transform import run_transform
from conftest import synthetic_splits, write_raw_dataset
from contract import layout
from contract import schema as S
from contract.features import raw_feature_spec

SCHEMA = S.RawSchema(
    ranking_features=(
        S.RankingFeature("lexical_score", relevance_score=True),
        S.RankingFeature("price", log1p=True),
        S.RankingFeature("rating", required=False),
    ),
    markets=("de", "us"),
)


def _rows() -> dict:
    splits = synthetic_splits(400, 60, 60)
    for rows in splits.values():
        for i, row in enumerate(rows):
            row[S.MARKET] = ("de", "us")[i % 2]
            row[S.POSITION] = float(i % 7)
            if i % 5 == 0:
                row["rating"] = None  # an optional feature absent
    return splits


def _transform_from_tfrecords(examples: str, tft_dir: str, tx_dir: str, temp: str) -> None:
    """The transform as it ran before, over TFRecords of tf.Examples: tfx_bsl's TFXIO reads
    and decodes them."""
    proto = schema_utils.schema_from_feature_spec(raw_feature_spec(SCHEMA))
    fn = functools.partial(preprocessing_fn, raw_schema=SCHEMA)

    def source(split: str) -> tfxio.TFExampleRecord:
        return tfxio.TFExampleRecord(layout.split_pattern(examples, split), schema=proto)

    with make_pipeline([], 1) as pipeline, tft_beam.Context(temp_dir=temp):
        train = source("train")
        transform_fn = (
            pipeline | "ReadTrain" >> train.BeamSource(),
            train.TensorAdapterConfig(),
        ) | tft_beam.AnalyzeDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(tft_dir)
        for split in S.SPLITS:
            split_source = source(split)
            transformed, metadata = (
                (
                    pipeline | f"Read{split}" >> split_source.BeamSource(),
                    split_source.TensorAdapterConfig(),
                ),
                transform_fn,
            ) | f"Transform{split}" >> tft_beam.TransformDataset(output_record_batches=True)
            encoder = metadata.deferred_metadata | f"Encoder{split}" >> beam.Map(
                lambda m: RecordBatchToExamplesEncoder(m.schema)
            )
            _ = (
                transformed
                | f"Encode{split}"
                >> beam.MapTuple(
                    lambda batch, _, encoder=None: tfrecords.frame(encoder.encode(batch)),
                    encoder=beam.pvalue.AsSingleton(encoder),
                )
                | f"Write{split}"
                >> tfrecords.WriteTFRecordBlocks(
                    layout.split_prefix(tx_dir, split), layout.RECORD_SUFFIX
                )
            )


def _transformed(tx_dir: str, split: str, spec: dict) -> dict[str, np.ndarray]:
    files = sorted(tf.io.gfile.glob(layout.split_pattern(tx_dir, split)))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100_000)
    parsed = {k: v.numpy() for k, v in tf.io.parse_example(next(iter(records)), spec).items()}
    order = np.argsort(parsed[S.PRODUCT_ID])
    return {k: v[order] for k, v in parsed.items()}


def test_the_transform_from_parquet_equals_the_transform_from_tfrecords(tmp_path):
    raw = write_raw_dataset(str(tmp_path / "raw"), _rows(), SCHEMA)
    run_transform(raw, str(tmp_path / "tft"), str(tmp_path / "tx"), temp_dir=str(tmp_path / "t1"))
    exported = str(tmp_path / "tfrecords")
    raw_splits.export_tfrecords(raw, exported)
    _transform_from_tfrecords(
        exported, str(tmp_path / "ref_tft"), str(tmp_path / "ref_tx"), str(tmp_path / "t2")
    )

    ours, theirs = (
        tft.TFTransformOutput(str(tmp_path / "tft")),
        tft.TFTransformOutput(str(tmp_path / "ref_tft")),
    )
    spec = theirs.transformed_feature_spec()
    assert ours.transformed_feature_spec() == spec
    for column in (*S.CATEGORICAL_COLUMNS, S.MARKET):
        name = S.vocab_name(column)
        assert ours.vocabulary_by_name(name) == theirs.vocabulary_by_name(name), column
    for split in S.SPLITS:
        got = _transformed(str(tmp_path / "tx"), split, spec)
        want = _transformed(str(tmp_path / "ref_tx"), split, spec)
        assert len(got[S.PRODUCT_ID]) == {"train": 400, "eval": 60, "test": 60}[split]
        for name in spec:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{split}/{name}")
