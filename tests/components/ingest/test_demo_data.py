"""The demo shop: deterministic, consistent, and harder than word overlap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from components.ingest import demo_data
from contract import schema as S


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return demo_data.generate(600, seed=0, include_relevance=True)


def test_same_seed_same_log_other_seed_other_log(log):
    pd.testing.assert_frame_equal(demo_data.generate(600, seed=0, include_relevance=True), log)
    other = demo_data.generate(600, seed=1, include_relevance=True)
    assert set(other[S.QUERY]) != set(log[S.QUERY])


def test_columns_and_ranges(log):
    hidden = log.drop(columns=[demo_data.RELEVANCE])
    assert tuple(hidden.columns) == demo_data.COLUMNS
    assert tuple(demo_data.generate(3, seed=0).columns) == demo_data.COLUMNS
    assert set(S.DEMO_SCHEMA.feature_names) <= set(log.columns)
    assert log[S.QUERY].nunique() == 600
    assert log.groupby(S.QUERY).size().between(10, 30).all()
    assert not log.duplicated([S.QUERY, S.PRODUCT_ID]).any()
    for feature in S.DEMO_SCHEMA.ranking_features:
        values = log[feature.name]
        assert feature.min_value is None or values.min() >= feature.min_value
        assert feature.max_value is None or values.max() <= feature.max_value
    assert log[S.PRODUCT_TYPE].nunique() >= 15
    assert log[S.BRAND].nunique() >= 20
    assert log[S.COLOR].nunique() >= 10
    assert set(log[S.GENDER]) == {"women", "men", "unisex", "kids", ""}
    assert set(log[demo_data.RELEVANCE]) == {0, 1, 2, 3}


def test_funnel_is_consistent(log):
    impressions, clicks, atc, purchases = (log[c] for c in S.DEMO_SCHEMA.funnel)
    assert ((impressions >= clicks) & (clicks >= atc) & (atc >= purchases) & (purchases >= 0)).all()
    low = (impressions <= S.MIN_IMPRESSIONS_EXCLUSIVE).mean()
    assert 0.02 < low < 0.3  # some pairs for the ingest filter, not most


def test_engagement_follows_relevance_and_lexical_score(log):
    shown = log[log[S.IMPRESSIONS] > 0]
    ctr = shown[S.CLICKS] / shown[S.IMPRESSIONS]
    assert np.corrcoef(shown["lexical_score"], ctr)[0, 1] > 0.3
    by_grade = shown.assign(ctr=ctr).groupby(demo_data.RELEVANCE)["ctr"].mean()
    assert by_grade.is_monotonic_increasing
    totals = log.groupby(demo_data.RELEVANCE)[list(S.DEMO_SCHEMA.funnel)].sum()
    purchase_rate = totals[S.PURCHASES] / totals[S.CLICKS]
    assert purchase_rate[3] > 2 * purchase_rate[0]


def test_queries_use_words_the_relevant_titles_lack(log):
    trainers = log[log[S.QUERY] == "trainers"]
    relevant = trainers[trainers[demo_data.RELEVANCE] == 3]
    assert len(relevant) > 0
    assert set(relevant[S.PRODUCT_TYPE]) == {"running shoes"}
    assert not relevant[S.TITLE].str.contains("trainer", case=False).any()
    assert (relevant["lexical_score"] == 0.0).all()
    # Across the log many fully relevant pairs share no word at all with their query.
    perfect = log[log[demo_data.RELEVANCE] == 3]
    assert (perfect["lexical_score"] == 0.0).mean() > 0.2


def test_lexical_score():
    assert (
        demo_data.lexical_score(
            "waterproof hiking boots", "Nordic Trail waterproof hiking boots, olive"
        )
        == 1.0
    )
    assert (
        demo_data.lexical_score("womens hiking boots", "Nordic Trail women's hiking boots, olive")
        == 1.0
    )
    assert demo_data.lexical_score("red couch", "Arbor Home leather sofa, red") == 0.5
    assert demo_data.lexical_score("", "anything") == 0.0


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_write_round_trips(tmp_path, suffix):
    log = demo_data.generate(5, seed=3)
    path = demo_data.write(log, tmp_path / f"demo{suffix}")
    read = {
        ".csv": lambda p: pd.read_csv(p, keep_default_na=False),
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".parquet": pd.read_parquet,
    }[suffix](path)
    assert list(read.columns) == list(demo_data.COLUMNS)
    assert read[S.TITLE].tolist() == log[S.TITLE].tolist()
    assert read[S.CLICKS].tolist() == log[S.CLICKS].tolist()
    np.testing.assert_allclose(read["price"], log["price"])


def test_write_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"cannot tell the format of .*demo\.xlsx"):
        demo_data.write(demo_data.generate(1, seed=0), tmp_path / "demo.xlsx")
    with pytest.raises(ValueError, match="num_queries must be at least 1, got 0"):
        demo_data.generate(0, seed=0)


def test_cli(tmp_path):
    out = tmp_path / "demo.csv"
    result = CliRunner().invoke(
        demo_data.main, ["--queries", "20", "--seed", "5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out, keep_default_na=False)
    assert written[S.QUERY].nunique() == 20
    assert f"wrote {len(written)} rows for 20 queries" in result.output
    assert len(written) == len(demo_data.generate(20, seed=5))
