import functools
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components.transform.preprocessing import preprocessing_fn
from components.transform.transform import TransformError, run_transform
from conftest import write_raw_dataset
from contract import layout
from contract import schema as S
from contract.features import raw_feature_spec

SCHEMA = S.RawSchema(
    ranking_features=(
        S.RankingFeature("lexical_score"),
        S.RankingFeature("review_count", log1p=True),
        S.RankingFeature("rating", required=False),
    )
)


def _row(
    query, pid, lexical, reviews, rating, brand="Acme", color="", clicks=0, carts=0, impressions=10
):
    return {
        S.QUERY: query,
        S.PRODUCT_ID: pid,
        S.TITLE: f"title {pid}",
        S.PRODUCT_TYPE: "Boots",
        S.BRAND: brand,
        S.COLOR: color,
        S.GENDER: "women",
        S.DESCRIPTION: "",
        "lexical_score": lexical,
        "review_count": reviews,
        "rating": rating,
        S.IMPRESSIONS: impressions,
        S.CLICKS: clicks,
        S.ADD_TO_CART: carts,
        S.PURCHASES: 0,
    }


TRAIN = [
    _row("red boots", "p1", 0.0, 0, 4.0, clicks=1),
    _row("red boots", "p2", 1.0, 9, None, brand="Zeta", color="Red"),
    _row("rain boots", "p3", 2.0, 99, 2.0, brand="acme", clicks=5, carts=2, impressions=40),
]
# Eval/test values far from the train ones: if they leaked into the statistics, the
# z-scores of the train rows would change.
EVAL = [_row("boots for rain", "p4", 100.0, 100000, 1.0, brand="Unseen")]
TEST = [_row("green wellies", "p5", -50.0, 5, 5.0)]


def _zs(values):
    values = np.asarray(values, dtype=np.float64)
    return (values - values.mean()) / values.std()


@pytest.fixture(scope="module")
def transform_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("transform")
    raw = write_raw_dataset(str(root / "raw"), {"train": TRAIN, "eval": EVAL, "test": TEST}, SCHEMA)
    out, examples = str(root / "tft"), str(root / "transformed")
    run_transform(raw, out, examples, temp_dir=str(root / "tmp"))
    return out, examples


def _read(examples_dir, split, tft_output):
    files = tf.io.gfile.glob(layout.split_pattern(examples_dir, split))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(100)
    batch = next(iter(ds))
    return tf.io.parse_example(batch, tft_output.transformed_feature_spec())


def test_zscores_use_training_statistics_only(transform_run):
    out, examples = transform_run
    tft_output = tft.TFTransformOutput(out)
    train = _read(examples, "train", tft_output)
    order = np.argsort(train[S.PRODUCT_ID].numpy())
    np.testing.assert_allclose(
        train[S.zscore_name("lexical_score")].numpy()[order], _zs([0.0, 1.0, 2.0]), rtol=1e-5
    )
    np.testing.assert_allclose(
        train[S.zscore_name("review_count")].numpy()[order],
        _zs(np.log1p([0.0, 9.0, 99.0])),
        rtol=1e-5,
    )
    # Optional feature: mean/std over the present values (4, 2); the missing one is imputed as 0.
    np.testing.assert_allclose(
        train[S.zscore_name("rating")].numpy()[order], [1.0, 0.0, -1.0], atol=1e-5
    )
    # Eval row transformed with the train statistics (mean 1, std sqrt(2/3)).
    ev = _read(examples, "eval", tft_output)
    assert ev[S.zscore_name("lexical_score")].numpy()[0] == pytest.approx(
        (100.0 - 1.0) / math.sqrt(2 / 3), rel=1e-5
    )
    wide = train[S.WIDE].numpy()[order]
    assert wide.shape == (3, 3)
    np.testing.assert_allclose(wide[:, 0], _zs([0.0, 1.0, 2.0]), rtol=1e-5)


def test_vocabularies_come_from_training_split(transform_run):
    out, examples = transform_run
    tft_output = tft.TFTransformOutput(out)
    vocab = tft_output.vocabulary_by_name(S.vocab_name(S.BRAND))
    assert sorted(v.decode() for v in vocab) == ["acme", "zeta"]  # lower-cased, 'Unseen' absent
    ev = _read(examples, "eval", tft_output)
    assert ev[S.vocab_id_name(S.BRAND)].numpy()[0] == len(vocab)  # the OOV bucket


def test_product_text_and_labels(transform_run):
    out, examples = transform_run
    tft_output = tft.TFTransformOutput(out)
    train = _read(examples, "train", tft_output)
    texts = dict(zip(train[S.PRODUCT_ID].numpy(), train[S.PRODUCT_TEXT].numpy(), strict=True))
    assert texts[b"p1"] == b"title p1 | Boots | Acme | women"  # empty color skipped
    assert texts[b"p2"] == b"title p2 | Boots | Zeta | Red | women"

    def by_product(column):
        return dict(zip(train[S.PRODUCT_ID].numpy(), train[column].numpy().tolist(), strict=True))

    assert by_product("click") == {b"p1": 1, b"p2": 0, b"p3": 1}
    assert by_product("atc") == {b"p1": 0, b"p2": 0, b"p3": 1}
    # The soft targets: each count per impression.
    assert by_product(S.rate_name("click")) == pytest.approx({b"p1": 0.1, b"p2": 0.0, b"p3": 0.125})
    assert by_product(S.rate_name("atc")) == pytest.approx({b"p1": 0.0, b"p2": 0.0, b"p3": 0.05})
    assert by_product(S.rate_name("purchase")) == {b"p1": 0.0, b"p2": 0.0, b"p3": 0.0}


def test_serving_graph_accepts_features_without_labels(transform_run):
    out, _ = transform_run
    tft_output = tft.TFTransformOutput(out)
    layer = tft_output.transform_features_layer()
    raw = {
        S.QUERY: tf.constant(["red boots"]),
        S.PRODUCT_ID: tf.constant(["p9"]),
        S.TITLE: tf.constant(["t"]),
        S.PRODUCT_TYPE: tf.constant([""]),
        S.BRAND: tf.constant(["ZETA"]),
        S.COLOR: tf.constant([""]),
        S.GENDER: tf.constant([""]),
        S.DESCRIPTION: tf.constant([""]),
        "lexical_score": tf.constant([1.0]),
        "review_count": tf.constant([9.0]),
        "rating": tf.sparse.from_dense(tf.constant([[3.0]])),
    }
    result = layer(raw)
    assert "click" not in result
    assert result[S.zscore_name("lexical_score")].numpy()[0] == pytest.approx(0.0, abs=1e-6)
    vocab = [v.decode() for v in tft_output.vocabulary_by_name(S.vocab_name(S.BRAND))]
    assert result[S.vocab_id_name(S.BRAND)].numpy()[0] == vocab.index("zeta")


def test_in_memory_analyze_and_transform_matches_formula(tmp_path):
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    schema = S.RawSchema(ranking_features=(S.RankingFeature("price", log1p=True),))
    spec = raw_feature_spec(schema)
    rows = []
    for k, price in enumerate([0.0, math.e - 1, math.e**2 - 1]):
        row = {c: b"" for c in S.TEXT_COLUMNS}
        row.update({S.QUERY: b"q", S.TITLE: b"t", "price": price, S.POSITION: 0.0})
        row.update({c: 1 for c in S.DEMO_SCHEMA.funnel})
        row.update({t: k % 2 for t in S.DEFAULT_TASKS})
        rows.append(row)
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with tft_beam.Context(temp_dir=str(tmp_path), force_tf_compat_v1=False):
        (result, _), _ = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            functools.partial(preprocessing_fn, raw_schema=schema)
        )
    z = [r[S.zscore_name("price")] for r in result]
    # log1p gives 0, 1, 2: mean 1, population std sqrt(2/3).
    # (The prices arrive as float32, so log1p of e - 1 is 1 only to about 1e-8.)
    np.testing.assert_allclose(
        z, np.array([-1.0, 0.0, 1.0]) / math.sqrt(2 / 3), rtol=1e-5, atol=1e-6
    )


def test_missing_split_is_a_clear_error(tmp_path):
    raw = write_raw_dataset(str(tmp_path / "raw"), {"train": TRAIN, "eval": EVAL}, SCHEMA)
    with pytest.raises(TransformError, match="no test split"):
        run_transform(raw, str(tmp_path / "o"), str(tmp_path / "e"))


def test_zscores_are_the_float64_formula_rounded_once(tmp_path):
    """The statistics are accumulated in float64, so the z-scores do not depend on the order
    in which Beam combines its bundles: each one is (x - mean) / std of the training split,
    computed in float64 and rounded to float32, to the bit."""
    from conftest import synthetic_splits, transformed_dataset

    rows = synthetic_splits(3000, 10, 10)
    dirs = transformed_dataset(tmp_path, rows, S.DEMO_SCHEMA)
    tft_output = tft.TFTransformOutput(dirs["tft"])
    files = tf.io.gfile.glob(layout.split_pattern(dirs["tx"], "train"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(10_000)
    parsed = tf.io.parse_example(next(iter(records)), tft_output.transformed_feature_spec())
    by_id = {p.decode(): i for i, p in enumerate(parsed[S.PRODUCT_ID].numpy())}
    order = [by_id[r[S.PRODUCT_ID]] for r in rows["train"]]
    for feature, log1p in (("lexical_score", False), ("price", True)):
        x = np.array([r[feature] for r in rows["train"]], dtype=np.float32).astype(np.float64)
        if log1p:
            x = np.log1p(x)
        expected = ((x - x.mean()) / x.std()).astype(np.float32)
        got = parsed[S.zscore_name(feature)].numpy()[order]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_a_retry_replaces_what_a_killed_attempt_left(tmp_path):
    """A transform killed half-way leaves shards and part of a graph behind; running it again
    into the same folders (a retried step) gives only this attempt's outputs."""
    raw = write_raw_dataset(
        str(tmp_path / "raw"), {"train": TRAIN, "eval": EVAL, "test": TEST}, SCHEMA
    )
    out, examples = tmp_path / "tft", tmp_path / "transformed"
    stale = examples / "train" / f"data-00007-of-00009{layout.RECORD_SUFFIX}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a shard of an earlier attempt")
    (out / tft.TFTransformOutput.TRANSFORM_FN_DIR).mkdir(parents=True)
    (out / tft.TFTransformOutput.TRANSFORM_FN_DIR / "saved_model.pb").write_bytes(b"partial")
    run_transform(raw, str(out), str(examples), temp_dir=str(tmp_path / "tmp"))
    shards = tf.io.gfile.glob(layout.split_pattern(str(examples), "train"))
    assert str(stale) not in shards and shards
    tft_output = tft.TFTransformOutput(str(out))
    rows = sum(
        int(b.shape[0]) for b in tf.data.TFRecordDataset(shards, compression_type="GZIP").batch(100)
    )
    assert rows == len(TRAIN)
    assert "query" in tft_output.transformed_feature_spec()
