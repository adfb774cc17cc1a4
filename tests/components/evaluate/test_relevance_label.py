"""The evaluation's engagement relevance label: read in the order the scorer reads the split,
from the click rate by position and the encoder's similarity, and ranked against the score."""

import numpy as np
import pytest
from evaluate_testlib import save_scorer

from components.evaluate.metrics import ndcg_at_k
from components.evaluate.relevance_label import engagement_labels
from components.evaluate.scoring import compute_metrics, score_split
from components.transform.relevance import encoder_similarity, engagement_relevance
from contract import layout
from contract import schema as S

FEATURES = S.RawSchema(ranking_features=(S.RankingFeature("lexical_score"),))
ROWS = [
    {S.QUERY: "Red  Shoes", S.PRODUCT_ID: "p1", S.TITLE: "red running shoes", S.BRAND: "Acme",
     "lexical_score": 0.9, S.IMPRESSIONS: 100, S.CLICKS: 20, S.ADD_TO_CART: 2, S.PURCHASES: 1,
     S.POSITION: 1.0},
    {S.QUERY: "Red  Shoes", S.PRODUCT_ID: "p2", S.TITLE: "blue hat", S.BRAND: "",
     "lexical_score": 0.2, S.IMPRESSIONS: 100, S.CLICKS: 1, S.ADD_TO_CART: 0, S.PURCHASES: 0,
     S.POSITION: 2.0},
    {S.QUERY: "Red  Shoes", S.PRODUCT_ID: "p3", S.TITLE: "red shoes", S.BRAND: "",
     "lexical_score": 0.5, S.IMPRESSIONS: 40, S.CLICKS: 4, S.ADD_TO_CART: 0, S.PURCHASES: 0,
     S.POSITION: 6.0},
    {S.QUERY: "socks", S.PRODUCT_ID: "p4", S.TITLE: "wool socks", S.BRAND: "",
     "lexical_score": 0.7, S.IMPRESSIONS: 30, S.CLICKS: 3, S.ADD_TO_CART: 0, S.PURCHASES: 0,
     S.POSITION: 0.0},
    {S.QUERY: "socks", S.PRODUCT_ID: "p5", S.TITLE: "cotton socks", S.BRAND: "",
     "lexical_score": 0.1, S.IMPRESSIONS: 30, S.CLICKS: 0, S.ADD_TO_CART: 0, S.PURCHASES: 0,
     S.POSITION: 0.0},
]  # fmt: skip


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from conftest import write_raw_dataset

    root = write_raw_dataset(str(tmp_path_factory.mktemp("relevance")), {"test": ROWS}, FEATURES)
    return layout.raw_split_pattern(root, "test")


def similarity_of_rows(cache: str) -> np.ndarray:
    # The rows as written: the normalised query, the joined product text.
    return encoder_similarity(
        ["red shoes"] * 3 + ["socks"] * 2,
        ["red running shoes | Acme", "blue hat", "red shoes", "wool socks", "cotton socks"],
        "tiny",
        cache,
    )


def test_the_label_of_each_record_in_order(split, tmp_path):
    labels = engagement_labels(split, "tiny", FEATURES, str(tmp_path / "cache"))
    similarity = similarity_of_rows(str(tmp_path / "cache"))
    expected = engagement_relevance(
        np.array([r[S.QUERY] for r in ROWS]),
        np.array([r[S.CLICKS] for r in ROWS]),
        np.array([r[S.IMPRESSIONS] for r in ROWS]),
        np.array([r[S.POSITION] for r in ROWS]),
        similarity,
    )
    np.testing.assert_allclose(labels, expected, rtol=1e-6)
    assert labels.min() >= 0.0 and labels.max() <= 3.0


def test_the_clicks_are_the_first_tasks_count(tmp_path):
    """A funnel whose first stage after impressions is not "clicks": its count is read."""
    from conftest import write_raw_dataset

    views = [60, 30, 10, 12, 2]
    rows = [{**r, "product_views": v} for r, v in zip(ROWS, views, strict=True)]
    schema = S.RawSchema(
        ranking_features=FEATURES.ranking_features,
        tasks=(S.Task("view", "product_views"), *S.DEFAULT_FUNNEL),
    )
    root = write_raw_dataset(str(tmp_path / "views"), {"test": rows}, schema)
    labels = engagement_labels(
        layout.raw_split_pattern(root, "test"), "tiny", schema, str(tmp_path / "cache")
    )
    expected = engagement_relevance(
        np.array([r[S.QUERY] for r in ROWS]),
        np.array(views),
        np.array([r[S.IMPRESSIONS] for r in ROWS]),
        np.array([r[S.POSITION] for r in ROWS]),
        similarity_of_rows(str(tmp_path / "cache")),
    )
    np.testing.assert_allclose(labels, expected, rtol=1e-6)
    clicks = engagement_labels(
        layout.raw_split_pattern(root, "test"), "tiny", FEATURES, str(tmp_path / "cache")
    )
    assert not np.allclose(labels, clicks)


def test_relevance_ndcg_ranks_the_score_against_the_label(split, tmp_path):
    model = save_scorer(str(tmp_path / "model"), lambda x: x)
    scored = score_split(model, split, FEATURES.task_names)
    labels = engagement_labels(split, "tiny", FEATURES, str(tmp_path / "cache"))
    metrics = compute_metrics(scored, relevance=labels)
    expected = ndcg_at_k(scored.query, labels, scored.score, 5).mean
    assert metrics["relevance/ndcg@5"] == pytest.approx(expected)
    assert 0.0 < metrics["relevance/ndcg@1"] <= 1.0
    assert "relevance/ndcg@5" not in compute_metrics(scored)
