"""The transfer benchmark: the demo shop as a second Home Depot-format shop, and its report's
paired tests against the zero-shot cosine of the target."""

import importlib.util
import os
import sys

import numpy as np

_BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
sys.path.insert(0, _BENCHMARKS)  # as when the script runs: it imports paper_tables
_spec = importlib.util.spec_from_file_location("transfer", os.path.join(_BENCHMARKS, "transfer.py"))
transfer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(transfer)


def test_the_demo_shop_becomes_a_home_depot_source_table():
    from components.ingest import demo_data

    table = transfer.pt.demo_as_homedepot(12, seed=3)
    shop = demo_data.generate(12, seed=3, include_relevance=True)
    assert list(table.columns) == ["search_term", "product_uid", "product_title", "relevance"]
    assert table["search_term"].tolist() == shop["query"].tolist()
    # Grades 0..3 become Home Depot's 1..3.
    np.testing.assert_allclose(table["relevance"], 1 + shop["relevance"] * 2 / 3)
    assert table["relevance"].min() >= 1.0 and table["relevance"].max() <= 3.0


def test_the_report_tests_each_model_against_the_targets_zero_shot_cosine():
    queries = [f"q{i}" for i in range(10)]

    def result(offset: float, seeds: int) -> dict:
        per_query = {m: {q: 0.8 + offset + 0.01 * (i % 4) for i, q in enumerate(queries)}
                     for m in transfer.METRICS}  # fmt: skip
        metrics = {f"{m}/ndcg@5": 0.8 + offset for m in transfer.METRICS}
        return {"metrics": [metrics] * seeds, "per_query": [per_query] * seeds}

    below = result(-0.05, 2)
    below["per_query"][1] = {  # a second seed, lower on one query: the mean is compared
        m: {**pq, "q0": pq["q0"] - 0.02} for m, pq in below["per_query"][1].items()
    }
    results = {
        "zero-shot all-minilm-l6-v2": result(0.0, 1),
        "mlpr": {**result(0.0, 2), "source": [{f"{m}/ndcg@5": 0.9 for m in transfer.METRICS}]},
        "xgboost": below,
    }
    meta = {
        "source": "homedepot", "target": "demo-homedepot", "seeds": [0, 1], "cpus": 2,
        "command": "x", "source_data": "s", "target_data": "t", "minutes": 1.0,
    }  # fmt: skip
    text = transfer.report(results, meta)
    assert "| mlpr | human | 10 | +0.0000 |" in text
    assert "| xgboost | click | 10 | -0.0510 |" in text
    # Below the cosine on every query: the one-sided p is tiny, the row says so.
    row = next(line for line in text.splitlines() if line.startswith("| xgboost | click |"))
    assert float(row.split("|")[-2]) < 1e-6
    assert "| mlpr | 0.9000 | 0.9000 | 0.9000 | 0.9000 |" in text
