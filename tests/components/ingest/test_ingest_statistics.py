"""Per-split statistics and the drift check written by ingest."""

import json
import math

import numpy as np
import pytest

from components.ingest import demo_data, job, split, statistics
from components.ingest.columnar import KeptRows
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


def test_split_statistics_are_exact_and_merge():
    fn = statistics.SplitStatistics(OPTIONAL)
    rows = [row(1.0, 4.0, clicks=2, carts=1), row(3.0, clicks=1, brand=""), row(5.0, 2.0)]
    whole = fn.extract_output(
        fn.merge_accumulators([fn.add_input(fn.create_accumulator(), r) for r in rows])
    )
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
    assert fn.extract_output(acc) == whole
    # A block of rows (as the ingest job adds them) gives the same, one at position 0 unknown.
    rows.append(row(7.0, position=0.0))
    block = KeptRows(
        "train",
        {
            c: [r.get(c, "") for r in rows]
            if c in S.TEXT_COLUMNS
            else np.asarray([r.get(c, np.nan) for r in rows], float)
            for c in (*S.TEXT_COLUMNS, *OPTIONAL.feature_names, *S.DEMO_SCHEMA.funnel, S.POSITION)
        },
        set(),
    )
    by_rows = fn.create_accumulator()
    for r in rows:
        by_rows = fn.add_input(by_rows, r)
    by_block = fn.extract_output(fn.add_input(fn.create_accumulator(), block))
    expected = fn.extract_output(by_rows)
    for column, stats in expected["features"].items():
        assert by_block["features"][column] == pytest.approx(stats), column
    for key in ("rows", "label_rate", "empty_text_share"):
        assert by_block[key] == pytest.approx(expected[key])
    assert by_block["features"][S.POSITION]["missing"] == 1
    assert by_block["features"]["rating"]["count"] == 2


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
