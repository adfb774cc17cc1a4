"""The untrained references of the quality benchmark, on a hand-checked example."""

import os
import sys

import numpy as np
import pandas as pd

from contract import schema as S

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import references  # noqa: E402


def _pairs() -> pd.DataFrame:
    rows = [
        ("cordless drill", "P1", "Cordless Drill 20V", 0.2, 1),
        ("cordless drill", "P2", "Garden Hose", 0.9, 0),
        ("cordless drill", "P3", "Drill Bits", 0.5, 0),
        ("garden hose", "P2", "Garden Hose", 0.1, 1),
        ("garden hose", "P1", "Cordless Drill 20V", 0.3, 0),
    ]
    frame = pd.DataFrame(rows, columns=[S.QUERY, S.PRODUCT_ID, S.TITLE, "lexical_score", "click"])
    frame["query_text"] = frame[S.QUERY]
    frame["product_text"] = frame[S.TITLE]
    frame[S.IMPRESSIONS] = 10
    for task in S.DEFAULT_TASKS[1:]:
        frame[task] = frame["click"]
    return frame


def test_bm25_scores_matching_titles_above_others():
    pairs = _pairs()
    catalog = ["Cordless Drill 20V", "Garden Hose", "Drill Bits", "Rake", "Shovel", "Ladder"]
    scores = references.bm25_scores(pairs, catalog)
    # Query 1: both words match P1, one matches P3, none match P2.
    assert scores[0] > scores[2] > scores[1] == 0.0
    assert scores[3] > 0.0 == scores[4]


def test_bm25_idf_comes_from_the_catalog():
    """A word in every catalog title weighs less than a rare one (rank_bm25's Okapi IDF)."""
    pairs = _pairs().iloc[:1].assign(query_text="drill 20v")
    catalog = ["Drill A", "Drill B", "Drill C", "Cordless Drill 20V"]
    common = references.bm25_scores(pairs.assign(query_text="drill"), catalog)[0]
    rare = references.bm25_scores(pairs.assign(query_text="20v"), catalog)[0]
    assert rare > common


def test_a_reference_scores_every_task_and_keeps_the_pairs():
    pairs = _pairs()
    scored = references.as_scored(pairs, references.lexical_scores(pairs))
    assert list(scored.query) == list(pairs[S.QUERY])
    for task in S.DEFAULT_TASKS:
        np.testing.assert_allclose(scored.predictions[task], pairs["lexical_score"])
    assert scored.labels["click"].tolist() == [1, 0, 0, 1, 0]
