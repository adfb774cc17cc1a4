"""The benchmark's model grid: Table 4 must walk from MLP_MTL to exactly MLPR."""

import importlib.util
import os
import sys

from model.architectures import ARCHITECTURES, architecture

_BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
sys.path.insert(0, _BENCHMARKS)  # as when the script runs: its sibling modules import
_PATH = os.path.join(_BENCHMARKS, "paper_tables.py")
_spec = importlib.util.spec_from_file_location("paper_tables", _PATH)
paper_tables = importlib.util.module_from_spec(_spec)
sys.modules["paper_tables"] = paper_tables  # dataclasses look their module up here
_spec.loader.exec_module(paper_tables)


def test_table4_adds_stages_up_to_mlpr():
    variants = paper_tables.table4_variants()
    assert variants[0].label == "mlp_mtl (frozen)" and variants[-1].architecture == "mlpr"
    last_frozen = architecture("mlp_mtl").replace(**dict(variants[-2].changes))
    assert last_frozen == architecture("mlpr").replace(fine_tune_layers=0)
    # Each step switches on exactly what its label says, on top of the previous step.
    configs = [architecture(v.architecture).replace(**dict(v.changes)) for v in variants[:-1]]
    assert configs[0].loss_balancing == "fixed" and configs[1].loss_balancing == "uncertainty"
    assert configs[2].specific_experts and not configs[1].specific_experts
    assert configs[3].attention_units and not configs[2].attention_units
    assert configs[4].probability_transfer and not configs[3].probability_transfer


def test_table2_covers_every_architecture_and_xgboost():
    assert set(paper_tables.TABLE2) == {*ARCHITECTURES, "xgboost"}
    labels = [v.label for v in paper_tables.all_variants()]
    assert len(labels) == len(set(labels))


def test_no_configuration_is_trained_twice():
    configs = [
        (
            v.architecture,
            tuple(sorted(dict(v.changes).items())),
            tuple(sorted(dict(v.train_changes).items())),
            v.cosine_feature,
        )
        for v in paper_tables.all_variants("all-minilm-l6-v2")
    ]
    assert len(configs) == len(set(configs))


def test_human_grades_map_each_home_depot_pair_to_its_grade():
    import pandas as pd

    from contract import schema as S

    log = pd.DataFrame(
        {
            S.QUERY: ["drill", "drill", "saw", "drill"],
            S.PRODUCT_ID: [1, 2, 1, 2],
            "relevance": [3, 1.67, 2.33, 1.0],
        }
    )
    grades = paper_tables.human_grades(log, "homedepot")
    # The duplicated pair keeps its first row's grade, the row ingest keeps.
    assert grades == {("drill", "1"): 3.0, ("drill", "2"): 1.67, ("saw", "1"): 2.33}
    assert paper_tables.human_grades(log, "demo") is None
    assert paper_tables.human_grades(log.drop(columns="relevance"), "homedepot") is None


def _result(metrics: dict, per_query: dict) -> dict:
    return {
        "metrics": [metrics],
        "per_query": [per_query],
        "groups": [
            {g: {"pairs": 1, "auc": 0.5, "ndcg@5": 0.5} for g in ("0-25%", "25-75%", "75-100%")}
        ],
        "speed": [100.0],
        "seconds": [1.0],
    }


def test_report_without_xgboost_and_with_references(tmp_path):
    """--models without xgboost gives absolute tables; references get paired tests."""
    from contract.schema import DEFAULT_TASKS

    queries = [f"q{i}" for i in range(12)]

    def run(offset: float) -> dict:
        metrics = {
            f"{t}/{m}": 0.5 + offset for t in DEFAULT_TASKS for m in ("auc", "ndcg@1", "ndcg@5")
        }
        per_query = {
            t: {q: 0.4 + offset + 0.01 * (i % 3) for i, q in enumerate(queries)}
            for t in DEFAULT_TASKS
        }
        return _result(metrics, per_query)

    results = {
        "mlpr": run(0.2), "mlp_mtl": run(0.1), "bm25": run(0.0), "mlpr (gradnorm)": run(0.23)
    }  # fmt: skip
    meta = {
        "dataset": "demo", "command": "x", "data": "d", "seeds": [0], "encoder_preset": "tiny",
        "max_epochs": 1, "cpus": 2, "minutes": 0.1,
    }  # fmt: skip
    text = paper_tables.write_report(results, meta, str(tmp_path))
    assert "Table 2: models (absolute" in text
    assert "| mlpr | 0.7000 ± 0.0000" in text
    assert "| MLPR vs bm25 | click | 12 | +0.2000 |" in text
    assert "| MLPR vs mlp_mtl | purchase | 12 | +0.1000 |" in text
    assert "References without training" in text
    # Each other loss balancing is tested against MLPR's uncertainty weighting.
    assert "| gradnorm | atc | 12 | +0.0300 |" in text


def test_the_market_section_tests_the_region_mask_and_shows_each_market():
    from contract.schema import DEFAULT_TASKS

    queries = [f"q{i}" for i in range(10)]

    def run(lift: float, seed_offset: float) -> dict:
        metrics = {
            f"{t}/{m}": 0.6 + lift + seed_offset for t in DEFAULT_TASKS for m in ("auc", "ndcg@5")
        }
        per_query = {
            t: {q: 0.5 + lift + 0.02 * (i % 4) for i, q in enumerate(queries)}
            for t in DEFAULT_TASKS
        }
        markets = {
            m: {"queries": 5, **{f"{t}/ndcg@5": 0.7 + lift for t in DEFAULT_TASKS}}
            for m in ("de", "us")
        }
        return {"metrics": metrics, "per_query": per_query, "markets": markets}

    def result(lift: float) -> dict:
        runs = [run(lift, 0.0), run(lift, 0.02)]  # two seeds, 0.02 apart: std 0.01
        return {key: [r[key] for r in runs] for key in runs[0]}

    keys = [f"{t}/ndcg@5" for t in DEFAULT_TASKS]
    lines = paper_tables.market_section(
        {"mlpr": result(0.0), "mlpr (region mask)": result(0.05)}, keys
    )
    text = "\n".join(lines)
    assert "| click | 10 | +0.0500 |" in text and "| 0.0100 |" in text
    assert "| de | 5 | 0.7500 / 0.7000 |" in text


def test_the_cosine_feature_is_the_zero_shot_cosine_of_the_texts_the_model_reads(tmp_path):
    """XGBoost's cosine column: the encoder's cosine of the normalised query and the joined
    product fields, one per row, and a ranking feature of the schema."""
    import numpy as np

    from components.ingest import demo_data
    from components.transform.relevance import encoder_similarity
    from contract import schema as S

    log = demo_data.generate(6, seed=1).head(8).reset_index(drop=True)
    log.loc[0, S.QUERY] = "  Cordless DRILL "
    schema = demo_data.demo_schema()
    out, out_schema = paper_tables.with_encoder_cosine(log, schema, "tiny", str(tmp_path / "c"))
    names = [f.name for f in out_schema.ranking_features]
    assert names == [*(f.name for f in schema.ranking_features), paper_tables.COSINE_FEATURE]
    cosine = out[paper_tables.COSINE_FEATURE].to_numpy()
    assert cosine.shape == (8,) and np.all(np.abs(cosine) <= 1.0)
    fields = ["title", "product_type", "brand", "color", "gender"]
    products = [
        " | ".join(str(row[f]).strip() for f in fields if str(row[f]).strip())
        for _, row in log.iterrows()
    ]
    queries = ["cordless drill", *(str(q).lower().strip() for q in log[S.QUERY][1:])]
    expected = encoder_similarity(queries, products, "tiny", str(tmp_path / "e"))
    np.testing.assert_allclose(cosine, expected, rtol=1e-5)
    # The query as the model reads it: case and outer spaces do not change the cosine.
    clean = log.assign(**{S.QUERY: queries})
    again, _ = paper_tables.with_encoder_cosine(clean, schema, "tiny", str(tmp_path / "d"))
    np.testing.assert_allclose(again[paper_tables.COSINE_FEATURE], cosine, rtol=1e-6)
    assert len(set(np.round(cosine, 6))) > 1  # one per row, not one per log
