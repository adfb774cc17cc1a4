"""The no-training references of the evaluate step and the quality benchmark, on
hand-checked examples."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from components.evaluate import references
from components.evaluate.stats import PairedComparison, one_sided_p_less
from contract import layout
from contract import schema as S


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
    scored = references.as_scored(pairs, references.lexical_scores(pairs), S.DEFAULT_TASKS)
    assert list(scored.query) == list(pairs[S.QUERY])
    for task in S.DEFAULT_TASKS:
        np.testing.assert_allclose(scored.predictions[task], pairs["lexical_score"])
    assert scored.labels["click"].tolist() == [1, 0, 0, 1, 0]


def test_a_reference_scores_the_schemas_tasks():
    pairs = _pairs().drop(columns=["atc"])
    scored = references.as_scored(pairs, references.lexical_scores(pairs), ("click", "purchase"))
    assert scored.tasks == ("click", "purchase")


def test_a_missing_feature_value_ranks_last():
    pairs = _pairs().assign(lexical_score=[0.2, np.nan, 0.5, 0.1, 0.3])
    np.testing.assert_allclose(
        references.feature_scores(pairs, "lexical_score"), [0.2, -0.9, 0.5, 0.1, 0.3]
    )


@pytest.mark.parametrize(
    ("mean", "p_two_sided", "expected"),
    [(-0.05, 0.02, 0.01), (0.05, 0.02, 0.99), (-0.01, 0.6, 0.3)],
)
def test_one_sided_p_from_the_two_sided(mean, p_two_sided, expected):
    paired = PairedComparison(10, mean, -1.0, 1.0, p_two_sided, 0.95)
    assert one_sided_p_less(paired) == pytest.approx(expected)


def test_one_sided_p_agrees_with_scipy():
    from scipy import stats

    from components.evaluate.stats import paired_comparison

    a = {f"q{i}": v for i, v in enumerate([0.5, 0.6, 0.2, 0.9, 0.4, 0.3])}
    b = {f"q{i}": v for i, v in enumerate([0.7, 0.6, 0.5, 0.8, 0.6, 0.5])}
    keys = sorted(a)
    expected = stats.ttest_rel([a[k] for k in keys], [b[k] for k in keys], alternative="less")
    p = one_sided_p_less(paired_comparison(a, b))
    assert p == pytest.approx(expected.pvalue)
    assert math.isnan(one_sided_p_less(PairedComparison(1, -0.2, -0.2, -0.2, math.nan, 0.95)))


def _train_info(model_dir, **config):
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / layout.TRAIN_INFO_FILE).write_text(json.dumps({"config": config}))
    return str(model_dir)


def test_the_zero_shot_encoder_is_the_candidates(tmp_path):
    frozen = _train_info(
        tmp_path / "frozen",
        architecture="mlpr",
        encoder_preset="all-minilm-l6-v2",
        query_length=12,
        product_length=40,
        ranker={"fine_tune_layers": 0},
    )
    (tmp_path / "frozen" / "encoder_preset").mkdir()
    encoder, note = references.zero_shot_encoder(frozen)
    # Frozen: the preset saved beside the model is the encoder as it started.
    assert note == ""
    assert encoder == references.ZeroShotEncoder(
        "zero-shot all-minilm-l6-v2", str(tmp_path / "frozen" / "encoder_preset"), 12, 40
    )
    tuned = _train_info(
        tmp_path / "tuned",
        architecture="mlpr",
        encoder_preset="all-minilm-l6-v2",
        ranker={"fine_tune_layers": "all"},
    )
    (tmp_path / "tuned" / "encoder_preset").mkdir()
    # Fine-tuned: the saved preset is trained; the untrained one is the starting preset.
    assert references.zero_shot_encoder(tuned)[0].preset == "all-minilm-l6-v2"


@pytest.mark.parametrize(
    ("config", "why"),
    [
        ({"architecture": "mlpr", "encoder_preset": "tiny"}, "starts from random weights"),
        ({"architecture": "xgboost", "encoder_preset": "tiny"}, "has no text encoder"),
    ],
)
def test_no_zero_shot_reference_without_a_pretrained_encoder(tmp_path, config, why):
    encoder, note = references.zero_shot_encoder(_train_info(tmp_path / "m", **config))
    assert encoder is None and why in note
    encoder, note = references.zero_shot_encoder(str(tmp_path / "bare"))
    assert encoder is None and "no train_info.json" in note
