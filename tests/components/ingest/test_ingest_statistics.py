"""Per-split statistics and the drift check written by ingest."""

import base64
import dataclasses
import json
import math
import pickle
import re

import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from components.ingest import demo_data, errors, job, split, statistics, statistics_files
from components.ingest.columnar import KeptRows
from components.ingest.counts import IngestCounts, SplitCounts
from contract import schema as S

OPTIONAL = S.RawSchema(
    ranking_features=(
        S.RankingFeature("score", min_value=0.0),
        S.RankingFeature("rating", required=False),
    )
)


def row(score, rating=None, clicks=0, carts=0, purchases=0, position=2.0, brand="b"):
    r = {
        S.QUERY: "q",
        S.PRODUCT_ID: "p",
        S.TITLE: "t",
        S.BRAND: brand,
        "score": score,
        S.IMPRESSIONS: 10,
        S.CLICKS: clicks,
        S.ADD_TO_CART: carts,
        S.PURCHASES: purchases,
        S.POSITION: position,
    }
    if rating is not None:
        r["rating"] = rating
    return r


def _block(rows, schema=OPTIONAL) -> KeptRows:
    return KeptRows(
        "train",
        {
            c: [r.get(c, "") for r in rows]
            if c in S.TEXT_COLUMNS
            else np.asarray([r.get(c, np.nan) for r in rows], float)
            for c in (*S.TEXT_COLUMNS, *schema.feature_names, *schema.funnel, S.POSITION)
        },
        set(),
    )


def _feature(dataset, name):
    (found,) = [f for f in dataset.features if list(f.path.step) == [name]]
    return found


def test_split_statistics_are_exact_and_merge():
    fn = statistics.SplitStatistics(OPTIONAL)
    rows = [row(1.0, 4.0, clicks=2, carts=1), row(3.0, clicks=1, brand=""), row(5.0, 2.0)]
    whole = fn.extract_output(
        fn.merge_accumulators([fn.add_input(fn.create_accumulator(), r) for r in rows])
    ).summary
    assert whole["rows"] == 3
    score = whole["features"]["score"]
    assert (score["count"], score["missing"], score["min"], score["max"]) == (3, 0, 1.0, 5.0)
    assert score["mean"] == pytest.approx(3.0)
    assert score["std"] == pytest.approx(math.sqrt(8 / 3))
    rating = whole["features"]["rating"]
    assert (rating["count"], rating["missing"], rating["mean"]) == (2, 1, 3.0)
    assert rating["missing_share"] == pytest.approx(1 / 3)
    assert whole["label_rate"] == pytest.approx({"click": 2 / 3, "atc": 1 / 3, "purchase": 0.0})
    assert whole["empty_text_share"][S.BRAND] == pytest.approx(1 / 3)
    # Accumulating in one go gives the same as merging partial accumulators.
    acc = fn.create_accumulator()
    for r in rows:
        acc = fn.add_input(acc, r)
    assert fn.extract_output(acc).summary == whole
    # A block of rows (as the ingest job adds them) gives the same, one at position 0 unknown.
    rows.append(row(7.0, position=0.0))
    by_rows = fn.create_accumulator()
    for r in rows:
        by_rows = fn.add_input(by_rows, r)
    by_block = fn.extract_output(fn.add_input(fn.create_accumulator(), _block(rows)))
    expected = fn.extract_output(by_rows)
    for column, stats in expected.summary["features"].items():
        assert by_block.summary["features"][column] == pytest.approx(stats), column
    for key in ("rows", "label_rate", "empty_text_share"):
        assert by_block.summary[key] == pytest.approx(expected.summary[key])
    assert by_block.summary["features"][S.POSITION]["missing"] == 1
    assert by_block.summary["features"]["rating"]["count"] == 2
    assert by_block.features == expected.features


def test_split_statistics_as_tfdv_features():
    """The same pass fills TFDV's FeatureNameStatistics: every column, typed as the
    tf.Example holds it, with the numbers worked out here by hand."""
    fn = statistics.SplitStatistics(OPTIONAL)
    rows = [
        row(0.0, 4.0, clicks=2, carts=1, brand="b"),
        row(3.0, clicks=1, brand=""),
        row(5.0, 2.0, brand="b"),
        row(4.0, 0.0, position=0.0, brand="Åsa"),
    ]
    out = fn.extract_output(fn.add_input(fn.create_accumulator(), _block(rows)))
    dataset = out.features
    assert dataset.num_examples == 4
    names = [".".join(f.path.step) for f in dataset.features]
    assert names == [
        "score", "rating", *OPTIONAL.funnel, S.POSITION, "click", "atc", "purchase",
        *S.TEXT_COLUMNS,
    ]  # fmt: skip
    types = {n: statistics_pb2.FeatureNameStatistics.Type.Name(f.type)
             for n, f in zip(names, dataset.features, strict=True)}  # fmt: skip
    assert (types["score"], types[S.POSITION], types[S.CLICKS], types["click"]) == (
        "FLOAT", "FLOAT", "INT", "INT",
    )  # fmt: skip
    assert types[S.BRAND] == "STRING"
    score = _feature(dataset, "score").num_stats
    # The median is a value of the data (the one at rank 1/2, as TFDV's sketch gives it).
    assert (score.min, score.median, score.max, score.num_zeros) == (0.0, 4.0, 5.0, 1)
    assert score.mean == 3.0 and score.std_dev == pytest.approx(math.sqrt(3.5))
    standard, quantiles = score.histograms
    assert standard.type == statistics_pb2.Histogram.STANDARD
    assert [(b.low_value, b.high_value) for b in standard.buckets][:2] == [(0.0, 0.5), (0.5, 1.0)]
    counts = [b.sample_count for b in standard.buckets]
    assert counts == [1, 0, 0, 0, 0, 1, 0, 1, 0, 1]  # [0, .5] | (2.5, 3] | (3.5, 4] | (4.5, 5]
    assert quantiles.type == statistics_pb2.Histogram.QUANTILES
    assert sum(b.sample_count for b in quantiles.buckets) == pytest.approx(4)
    rating = _feature(dataset, "rating").num_stats
    assert (rating.common_stats.num_non_missing, rating.common_stats.num_missing) == (3, 1)
    assert (rating.num_zeros, rating.min, rating.max) == (1, 0.0, 4.0)
    position = _feature(dataset, S.POSITION).num_stats.common_stats
    assert (position.num_non_missing, position.num_missing) == (3, 1)  # 0.0: unknown
    click = _feature(dataset, "click").num_stats
    assert (click.mean, click.num_zeros, click.min, click.max) == (0.5, 2, 0.0, 1.0)
    brand = _feature(dataset, S.BRAND).string_stats
    assert (brand.common_stats.num_non_missing, brand.common_stats.num_missing) == (3, 1)
    assert brand.unique == 2
    assert [(v.value, v.frequency) for v in brand.top_values] == [("b", 2.0), ("Åsa", 1.0)]
    assert [(b.low_rank, b.label) for b in brand.rank_histogram.buckets] == [(0, "b"), (1, "Åsa")]
    assert brand.avg_length == pytest.approx((1 + 1 + 4) / 3)  # bytes: "Å" is two
    common = brand.common_stats
    assert (common.min_num_values, common.max_num_values, common.tot_num_values) == (1, 1, 3)
    # The accumulator travels between Beam workers pickled (and compacted) and merges as it was.
    acc = fn.add_input(fn.create_accumulator(), _block(rows[:2]))
    later = pickle.loads(
        pickle.dumps(fn.compact(fn.add_input(fn.create_accumulator(), _block(rows[2:]))))
    )
    assert fn.extract_output(fn.merge_accumulators([acc, later])).features == dataset


def test_statistics_files_of_a_run_with_empty_splits(tmp_path):
    fn = statistics.SplitStatistics(OPTIONAL)
    rows = [row(1.0, 4.0, clicks=2), row(3.0, clicks=1), row(5.0, 2.0)]
    out = fn.extract_output(fn.add_input(fn.create_accumulator(), _block(rows)))
    counts = IngestCounts(
        rows_read=3,
        rows_kept=3,
        rows_filtered_low_impressions=0,
        rows_dead_letter=0,
        dead_letter_by_reason=dict.fromkeys(errors.REASONS, 0),
        funnel_clipped=0,
        splits={"train": SplitCounts(3, 1), "eval": SplitCounts(0, 0), "test": SplitCounts(0, 0)},
    )
    stats = statistics_files.write_statistics(str(tmp_path), {"train": out}, counts, ["click"])
    assert stats["splits"]["eval"] == {"rows": 0, "features": {}, "label_rate": {}, "queries": 0}
    assert stats["drift"] == []
    for name in ("eval", "test"):
        folder = tmp_path / statistics.TFDV_DIR / f"Split-{name}"
        (dataset,) = statistics_pb2.DatasetFeatureStatisticsList.FromString(
            (folder / statistics.FEATURE_STATS_FILE).read_bytes()
        ).datasets
        assert (dataset.name, dataset.num_examples, len(dataset.features)) == (name, 0, 0)
        found = anomalies_pb2.Anomalies.FromString(
            (folder / statistics.ANOMALIES_FILE).read_bytes()
        )
        assert found.data_missing and not found.anomaly_info
    text = (tmp_path / statistics.REPORT_FILE).read_text()
    assert "| rows | 3 | 0 | 0 |" in text and "| queries | 1 | 0 | 0 |" in text
    assert "| click label rate | 66.67% | - | - |" in text
    assert "| score | train | 3 | 0 | 0 | 1 | 3 | 5 | 3 | 1.633 |" in text
    assert "| brand | train | 3 | 0 | 1 | 1 | b (3) |" in text
    assert "## Drift against train: 0 finding(s)" in text
    page = (tmp_path / statistics.HTML_FILE).read_text()
    assert page.count("No rows.") == 2 and "<h2>train: 3 rows, 1 queries</h2>" in page


def _stats(mean, std, missing_share=0.0, click=0.5):
    feature = {"mean": mean, "std": std, "missing_share": missing_share}
    return {"rows": 100, "features": {"price": feature}, "label_rate": {"click": click}}


def test_drift_flags_mean_missing_and_label_rate_shifts():
    train = _stats(10.0, 2.0)
    assert statistics.drift_findings({"train": train, "eval": _stats(10.4, 2.0)}) == []
    found = statistics.drift_findings(
        {
            "train": train,
            "eval": _stats(11.0, 2.0),  # +0.5 std
            "test": _stats(10.0, 2.0, missing_share=0.3, click=0.2),
        }
    )
    assert [(f["split"], f["column"], f["kind"]) for f in found] == [
        ("eval", "price", "mean_shift"),
        ("test", "price", "missing_shift"),
        ("test", "click", "label_rate"),
    ]
    assert found[0]["message"] == "price: eval mean 11 vs train 10 (+0.50 train std)"
    assert found[2]["value"] == pytest.approx(0.4)


def test_ingest_writes_statistics_and_flags_a_shifted_eval_split(tmp_path):
    frame = demo_data.generate(80, seed=2)
    in_eval = frame[S.QUERY].map(split.split_of) == "eval"
    assert in_eval.any()
    frame.loc[in_eval, "price"] *= 20  # eval prices in another currency
    source = demo_data.write(frame, tmp_path / "log.csv")
    counts = job.run_ingest(str(source), str(tmp_path / "out"), S.DEMO_SCHEMA)
    stats = json.loads((tmp_path / "out" / statistics.STATISTICS_FILE).read_text())
    for name in S.SPLITS:
        assert stats["splits"][name]["rows"] == counts.splits[name].rows
        assert stats["splits"][name]["queries"] == counts.splits[name].queries
    assert stats["input"]["rows_read"] == counts.rows_read
    train_price = stats["splits"]["train"]["features"]["price"]
    assert train_price["count"] == counts.splits["train"].rows
    flagged = {(f["split"], f["column"], f["kind"]) for f in stats["drift"]}
    assert ("eval", "price", "mean_shift") in flagged
    assert not any(f["column"] == "price" for f in stats["drift"] if f["split"] == "test")
    text = (tmp_path / "out" / statistics.REPORT_FILE).read_text()
    assert "| rows | " in text and "price: eval mean" in text


# Eval prices in another currency and no purchases in eval; in test most ratings are gone and
# the rest are 0: findings of all three kinds, two of them on one feature.
RATING_OPTIONAL = dataclasses.replace(
    S.DEMO_SCHEMA,
    ranking_features=tuple(
        dataclasses.replace(f, required=False) if f.name == "rating" else f
        for f in S.DEMO_SCHEMA.ranking_features
    ),
)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("drifted")
    frame = demo_data.generate(300, seed=2)  # eval: enough queries to tell a label rate apart
    where = frame[S.QUERY].map(split.split_of)
    frame.loc[where == "eval", "price"] *= 20
    frame.loc[where == "eval", S.PURCHASES] = 0
    in_test = np.flatnonzero(where == "test")
    frame["rating"] = frame["rating"].astype(object)
    frame.loc[frame.index[in_test], "rating"] = 0.0
    frame.loc[frame.index[in_test[: int(len(in_test) * 0.6)]], "rating"] = ""
    schema_path = tmp / "schema.json"
    schema_path.write_text(RATING_OPTIONAL.to_json())
    source = demo_data.write(frame, tmp / "log.csv")
    counts = job.run_ingest(str(source), str(tmp / "out"), RATING_OPTIONAL)
    return tmp / "out", counts


def _split_stats(out, name) -> statistics_pb2.DatasetFeatureStatistics:
    """A split's FeatureStats.pb read with tensorflow_metadata alone: a plain serialized
    DatasetFeatureStatisticsList (what tfdv.load_stats_binary reads) of one dataset."""
    path = out / statistics.TFDV_DIR / f"Split-{name}" / statistics.FEATURE_STATS_FILE
    (dataset,) = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes()).datasets
    return dataset


def test_tfdv_statistics_hold_the_numbers_of_statistics_json(drifted):
    out, counts = drifted
    stats = json.loads((out / statistics.STATISTICS_FILE).read_text())
    for name in S.SPLITS:
        dataset, expected = _split_stats(out, name), stats["splits"][name]
        assert dataset.name == name and dataset.num_examples == expected["rows"] > 0
        query = _feature(dataset, S.QUERY)
        assert [(c.name, c.num) for c in query.custom_stats] == [
            ("normalised_queries", expected["queries"])
        ]
        for column, numbers in expected["features"].items():
            feature = _feature(dataset, column)
            kind = "INT" if column in RATING_OPTIONAL.funnel else "FLOAT"
            assert statistics_pb2.FeatureNameStatistics.Type.Name(feature.type) == kind
            got = feature.num_stats
            common = got.common_stats
            assert common.num_non_missing == numbers["count"], (name, column)
            assert common.num_missing == numbers["missing"], (name, column)
            assert common.num_missing / dataset.num_examples == numbers["missing_share"]
            assert (got.min, got.max) == (numbers["min"], numbers["max"]), (name, column)
            assert (got.mean, got.std_dev) == (numbers["mean"], numbers["std"]), (name, column)
            standard, quantiles = got.histograms
            assert standard.buckets[0].low_value == numbers["min"]
            assert standard.buckets[-1].high_value == numbers["max"]
            for histogram in (standard, quantiles):
                total = sum(b.sample_count for b in histogram.buckets)
                assert total == pytest.approx(numbers["count"]), (name, column)
            assert numbers["min"] <= got.median <= numbers["max"]
        for task, rate in expected["label_rate"].items():
            assert _feature(dataset, task).num_stats.mean == rate, (name, task)
        for column, share in expected["empty_text_share"].items():
            common = _feature(dataset, column).string_stats.common_stats
            assert common.num_missing / dataset.num_examples == share, (name, column)
    # In the test split 60% of the ratings are missing, the rest 0.
    rating = _feature(_split_stats(out, "test"), "rating").num_stats
    assert rating.num_zeros == rating.common_stats.num_non_missing > 0
    assert (rating.min, rating.median, rating.max) == (0.0, 0.0, 0.0)


def test_tfdv_anomalies_hold_the_drift_findings(drifted):
    out, _ = drifted
    drift = json.loads((out / statistics.STATISTICS_FILE).read_text())["drift"]
    assert {(f["split"], f["column"], f["kind"]) for f in drift} >= {
        ("eval", "price", "mean_shift"),
        ("eval", "purchase", "label_rate"),
        ("test", "rating", "mean_shift"),
        ("test", "rating", "missing_shift"),
    }
    types = {"mean_shift": "CUSTOM_VALIDATION", "missing_shift": "CUSTOM_VALIDATION",
             "label_rate": "COMPARATOR_L_INFTY_HIGH"}  # fmt: skip
    assert not (out / statistics.TFDV_DIR / "Split-train" / statistics.ANOMALIES_FILE).exists()
    for name in ("eval", "test"):
        folder = out / statistics.TFDV_DIR / f"Split-{name}"
        found = anomalies_pb2.Anomalies.FromString(
            (folder / statistics.ANOMALIES_FILE).read_bytes()
        )
        text = (folder / statistics.ANOMALIES_TEXT_FILE).read_text()
        assert text_format.Parse(text, anomalies_pb2.Anomalies()) == found
        reasons = sorted(
            (column, anomalies_pb2.AnomalyInfo.Type.Name(r.type), r.description)
            for column, info in found.anomaly_info.items()
            for r in info.reason
        )
        expected = sorted(
            (f["column"], types[f["kind"]], f["message"]) for f in drift if f["split"] == name
        )
        assert reasons == expected
        assert all(
            i.severity == anomalies_pb2.AnomalyInfo.WARNING for i in found.anomaly_info.values()
        )
    rating = found.anomaly_info["rating"]
    assert rating.short_description == "Multiple errors" and len(rating.reason) == 2


def test_views_are_made_from_the_protos(drifted):
    out, counts = drifted
    stats = json.loads((out / statistics.STATISTICS_FILE).read_text())
    text = (out / statistics.REPORT_FILE).read_text()
    queries = " | ".join(str(stats["splits"][s]["queries"]) for s in S.SPLITS)
    assert f"| queries | {queries} |" in text
    rates = " | ".join(f"{stats['splits'][s]['label_rate']['purchase']:.2%}" for s in S.SPLITS)
    assert f"| purchase label rate | {rates} |" in text
    assert f"## Drift against train: {len(stats['drift'])} finding(s)" in text
    assert all(f"- {f['message']}" in text for f in stats["drift"])
    price = stats["splits"]["eval"]["features"]["price"]
    assert f"| price | eval | {price['count']} | {price['missing']} | 0 |" in text
    page = (out / statistics.HTML_FILE).read_text()
    assert page.startswith("<!DOCTYPE html>") and "http" not in page  # self-contained
    assert page.count('<svg class="hist"') == 3 * (len(stats["splits"]["train"]["features"]) + 3)
    for name in S.SPLITS:
        assert f"<h2>{name}: {counts.splits[name].rows} rows" in page
    assert "COMPARATOR_L_INFTY_HIGH" in page and "Multiple errors" not in page
    facets = (out / statistics.FACETS_FILE).read_text()
    proto = re.search(r'protoInput = "([A-Za-z0-9+/=]+)"', facets).group(1)
    shown = statistics_pb2.DatasetFeatureStatisticsList.FromString(base64.b64decode(proto))
    assert list(shown.datasets) == [_split_stats(out, s) for s in S.SPLITS]
