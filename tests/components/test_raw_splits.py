"""The raw splits as Parquet (components/raw_splits.py): typed columns, one file per input
file in row order, the same bytes for the same rows, and what tf.Examples of the same rows
would give the transform and evaluate."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline

from components import raw_splits
from components.ingest.columnar import KeptRows
from conftest import write_raw_dataset
from contract import layout
from contract import schema as S
from contract.features import raw_feature_spec

SCHEMA = S.RawSchema(
    ranking_features=(
        S.RankingFeature("lexical_score"),
        S.RankingFeature("rating", required=False),
    ),
    markets=("de", "us"),
)


def _kept(n: int, start: int = 0, file_index: int = 0, first_row: int = 1) -> KeptRows:
    rows = np.arange(start, start + n)
    columns = {c: [f"{c} {i}" for i in rows] for c in S.TEXT_COLUMNS}
    columns[S.MARKET] = ["de" if i % 2 else "us" for i in rows]
    columns["lexical_score"] = rows / 10.0
    columns["rating"] = np.where(rows % 3 == 0, np.nan, rows / 7.0)
    columns.update({c: (rows + 10) * 2 for c in SCHEMA.funnel[:1]})
    columns.update({c: rows % 3 for c in SCHEMA.funnel[1:]})
    columns[S.POSITION] = rows / 4.0
    return KeptRows("train", columns, set(), file_index, first_row)


def test_a_batch_has_the_schemas_types():
    batch = raw_splits.to_record_batch(_kept(5), SCHEMA)
    assert batch.schema == raw_splits.arrow_schema(SCHEMA)
    types = dict(zip(batch.schema.names, batch.schema.types, strict=True))
    assert types[S.QUERY] == types[S.MARKET] == pa.large_string()
    assert types["lexical_score"] == types[S.POSITION] == pa.float32()
    assert types[S.IMPRESSIONS] == types["click"] == pa.int64()
    assert batch.column("rating").to_pylist()[:2] == [None, pytest.approx(1 / 7)]
    assert batch.column("click").to_pylist() == [0, 1, 1, 0, 1]  # clicks > 0
    assert not batch.schema.field("lexical_score").nullable
    assert batch.schema.field("rating").nullable


def test_list_batches_are_what_the_example_decoder_gives():
    """The transform's input from Parquet: the batch tfx_bsl's decoder makes of the same rows'
    tf.Examples (as the transform read them before), column for column."""
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

    batch = raw_splits.to_record_batch(_kept(7), SCHEMA)
    proto = schema_utils.schema_from_feature_spec(raw_feature_spec(SCHEMA))
    decoded = ExamplesToRecordBatchDecoder(proto.SerializeToString()).DecodeBatch(
        raw_splits.to_examples(batch)
    )
    lists = raw_splits.as_lists(batch)
    assert lists.schema == raw_splits.list_schema(SCHEMA)
    for name in lists.schema.names:
        assert lists.column(name).type == decoded.column(name).type, name
        got, want = lists.column(name).to_pylist(), decoded.column(name).to_pylist()
        # An absent optional feature: a null list here, an empty feature in the tf.Example.
        assert [v or [] for v in got] == [v or [] for v in want], name
    config = raw_splits.tensor_adapter_config(SCHEMA)
    from tfx_bsl.public.tfxio import TensorAdapter

    tensors = TensorAdapter(config).ToBatchTensors(lists, produce_eager_tensors=True)
    assert tensors[S.QUERY].shape == (7,)
    assert isinstance(tensors["rating"], tf.SparseTensor)
    assert tensors["rating"].values.shape == (4,)  # rows 0, 3 and 6 have none


def test_examples_parse_back_to_the_rows():
    batch = raw_splits.to_record_batch(_kept(4), SCHEMA)
    parsed = tf.io.parse_example(raw_splits.to_examples(batch), raw_feature_spec(SCHEMA))
    assert [v.decode() for v in parsed[S.MARKET].numpy()] == ["us", "de", "us", "de"]
    np.testing.assert_array_equal(parsed[S.CLICKS].numpy(), [0, 1, 2, 0])
    rating = tf.sparse.to_dense(parsed["rating"], default_value=-1.0).numpy()[:, 0]
    np.testing.assert_allclose(rating, [-1.0, 1 / 7, 2 / 7, -1.0], rtol=1e-6)


def _write(output_dir, blocks, files=2):
    with TestPipeline() as pipeline:
        _ = (
            pipeline
            | beam.Create(blocks, reshuffle=False)
            | beam.ParDo(raw_splits.WriteShards(str(output_dir), "train", files, SCHEMA))
        )


def test_one_file_per_input_file_in_row_order_and_the_same_bytes_again(tmp_path, monkeypatch):
    monkeypatch.setattr(raw_splits, "ROW_GROUP_ROWS", 10)
    blocks = [
        _kept(6, 0, file_index=0, first_row=1),
        _kept(3, 100, file_index=1, first_row=1),
        _kept(6, 6, file_index=0, first_row=9),
        _kept(2, 103, file_index=1, first_row=5),
        _kept(6, 12, file_index=0, first_row=20),
    ]
    _write(tmp_path / "a", blocks)
    _write(tmp_path / "b", blocks)
    names = sorted(p.name for p in (tmp_path / "a" / "train").iterdir())
    assert names == ["data-00000-of-00002.parquet", "data-00001-of-00002.parquet"]
    for name in names:
        first, again = (tmp_path / "a" / "train" / name), (tmp_path / "b" / "train" / name)
        assert first.read_bytes() == again.read_bytes()
    table = raw_splits.read_split(str(tmp_path / "a"), "train")
    assert table.column(S.PRODUCT_ID).to_pylist() == [
        f"{S.PRODUCT_ID} {i}" for i in [*range(18), *range(100, 105)]
    ]
    assert table.schema == raw_splits.arrow_schema(SCHEMA)
    groups = pq.ParquetFile(tmp_path / "a" / "train" / names[0]).metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [12, 6]
    assert not list((tmp_path / "a").rglob("beam-temp-*"))


def test_blocks_out_of_order_fail_instead_of_reordering(tmp_path):
    blocks = [_kept(3, 10, first_row=11), _kept(3, 0, first_row=1)]
    with pytest.raises(Exception, match="out of order"):
        _write(tmp_path, blocks)


def test_a_missing_split_is_a_clear_error(tmp_path):
    root = write_raw_dataset(str(tmp_path / "raw"), {"train": [], "eval": []}, SCHEMA)
    with pytest.raises(FileNotFoundError, match="no test split in .*test/data-\\*.parquet"):
        raw_splits.read_split(root, "test")
    assert raw_splits.read_split(root, "train").num_rows == 0


def test_export_writes_the_examples_as_tfrecords(tmp_path):
    root = str(tmp_path / "raw")
    rows = []
    for i, batch in enumerate([_kept(5), _kept(3, 5)]):
        path = layout.raw_shard_path(root, "test", i, 2)
        tf.io.gfile.makedirs(layout.split_dir(root, "test"))
        pq.write_table(pa.Table.from_batches([raw_splits.to_record_batch(batch, SCHEMA)]), path)
        rows += raw_splits.to_examples(raw_splits.to_record_batch(batch, SCHEMA))
    written = raw_splits.export_tfrecords(root, str(tmp_path / "out"), ["test"])
    assert [p.rsplit("/", 2)[1:] for p in written] == [
        ["test", f"data-0000{i}-of-00002{layout.RECORD_SUFFIX}"] for i in range(2)
    ]
    files = tf.io.gfile.glob(layout.split_pattern(str(tmp_path / "out"), "test"))
    read = [r.numpy() for r in tf.data.TFRecordDataset(sorted(files), compression_type="GZIP")]
    # The same features (a tf.Example's bytes depend on its map's order, which protobuf does
    # not fix).
    assert [tf.train.Example.FromString(r) for r in read] == [
        tf.train.Example.FromString(r) for r in rows
    ]
