"""No-training references scored on the same test pairs as the candidate: what a shop gets
for free, which a trained model must not rank below (the evaluate step's reference check,
gate.py) and the quality benchmark's reference rows (benchmarks/paper_tables.py):

- a ranking feature alone: the schema's features marked `relevance_score` (`lexical_score`
  in the demo shop and the adapters' logs);
- `bm25`: Okapi BM25 (rank_bm25) of the query against the product titles, with the catalog
  (every title of the splits) as the corpus;
- `zero-shot <preset>`: the cosine of the query's and the product text's vectors from the
  text encoder preset with no training at all (mean pooling, as MLPR pools); in the
  evaluate step, the candidate's own encoder as the train step started it.

Each gives one score per pair, used for every task (a ranking within each query), in a
ScoredSplit like a model's, so the same metrics and paired tests apply.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from components.evaluate.metrics import ndcg_per_query
from components.evaluate.stats import PairedComparison, one_sided_p_less, paired_comparison
from contract import layout
from contract import schema as S

LEXICAL, BM25, ZERO_SHOT = "lexical_score", "bm25", "zero-shot"
# The metric the reference check compares, per query.
REFERENCE_METRIC, REFERENCE_K = "ndcg@5", 5
_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def read_pairs(examples_dir: str, raw_schema: S.RawSchema, split: str = "test") -> pd.DataFrame:
    """The raw pairs of one split as ingest wrote them (in its row order, as
    evaluate.score_split reads them): query, product id, title, the ranking features,
    impressions and labels, plus `query_text` and `product_text`, the texts the model reads
    (the query normalised and the product fields joined, as the transform does)."""
    from components import raw_splits

    try:
        frame = raw_splits.read_split(examples_dir, split).to_pandas()
    except FileNotFoundError:
        raise FileNotFoundError(f"no {split} split in {examples_dir}") from None
    frame["query_text"], frame["product_text"] = model_texts(frame)
    return frame


def model_texts(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(query texts, product texts) of a frame of raw rows as the model reads them: the query
    normalised by the transform's own TensorFlow function, the product's text fields stripped
    and joined (a field the frame lacks counts as empty)."""
    import tensorflow as tf

    from components.transform.preprocessing import (
        PRODUCT_TEXT_FIELDS,
        PRODUCT_TEXT_SEPARATOR,
        query_text,
    )

    queries = [
        v.decode("utf-8") for v in query_text(tf.constant([str(q) for q in frame[S.QUERY]])).numpy()
    ]
    present = [c for c in PRODUCT_TEXT_FIELDS if c in frame]
    fields = frame[present].fillna("").astype(str).apply(lambda c: c.str.strip())
    products = [
        PRODUCT_TEXT_SEPARATOR.join(v for v in row if v) for row in fields.itertuples(index=False)
    ]
    return queries, products


def lexical_scores(pairs: pd.DataFrame) -> np.ndarray:
    return feature_scores(pairs, LEXICAL)


def feature_scores(pairs: pd.DataFrame, feature: str) -> np.ndarray:
    """A ranking feature alone as the score (a missing value ranks last in its query)."""
    values = pairs[feature].to_numpy(dtype=np.float64)
    missing = ~np.isfinite(values)
    if missing.any():
        low = float(values[~missing].min()) - 1.0 if (~missing).any() else 0.0
        values = np.where(missing, low, values)
    return values


def bm25_scores(pairs: pd.DataFrame, catalog_titles: list[str]) -> np.ndarray:
    """BM25 of each pair's query against its title; IDF and lengths from the catalog."""
    from rank_bm25 import BM25Okapi

    titles = list(dict.fromkeys([*catalog_titles, *pairs[S.TITLE]]))
    index = {t: i for i, t in enumerate(titles)}
    bm25 = BM25Okapi([tokens(t) for t in titles])
    scores = np.zeros(len(pairs))
    for query, rows in pairs.groupby("query_text").indices.items():
        docs = [index[t] for t in pairs[S.TITLE].iloc[rows]]
        scores[rows] = bm25.get_batch_scores(tokens(query), docs)
    return scores


def zero_shot_scores(
    pairs: pd.DataFrame, preset: str, cache_dir: str, query_length=16, product_length=48
) -> np.ndarray:
    """Cosine of the untrained encoder's mean-pooled query and product-text vectors
    (components/transform/relevance.encoder_similarity)."""
    from components.transform.relevance import encoder_similarity

    return encoder_similarity(
        list(pairs["query_text"]), list(pairs["product_text"]), preset, cache_dir,
        query_length, product_length,
    )  # fmt: skip


def as_scored(pairs: pd.DataFrame, scores: np.ndarray, tasks: Sequence[str]):
    """A ScoredSplit that ranks by `scores` for every task of `tasks` (the schema's
    `task_names`, each a label column of `pairs`)."""
    from components.evaluate.scoring import ScoredSplit

    scores = np.asarray(scores, dtype=np.float64)
    return ScoredSplit(
        query=pairs[S.QUERY].to_numpy(dtype=object),
        product_id=pairs[S.PRODUCT_ID].to_numpy(dtype=object),
        impressions=pairs[S.IMPRESSIONS].to_numpy(),
        labels={t: pairs[t].to_numpy() for t in tasks},
        predictions=dict.fromkeys(tasks, scores),
        score=scores,
    )


@dataclasses.dataclass(frozen=True)
class ZeroShotEncoder:
    """The text encoder of a candidate's zero-shot reference.

    Args:
        name: the reference's name, "zero-shot <preset>".
        preset: what to load: the preset directory the train step saved beside the model
            when the encoder stayed frozen (the weights training started from, a
            domain-pretrained encoder included), else the preset training started from.
        query_length: the candidate's query length in tokens.
        product_length: the candidate's product text length in tokens.
    """

    name: str
    preset: str
    query_length: int = 16
    product_length: int = 48


def zero_shot_encoder(model_dir: str) -> tuple[ZeroShotEncoder | None, str]:
    """(the candidate's encoder as the train step started it, "") from the model directory's
    train_info.json, or (None, why there is no zero-shot reference): no train_info.json, an
    XGBoost candidate (no text encoder), the random-weight "tiny" preset (its cosine before
    training means nothing), or a starting preset that is not reachable here."""
    from model.presets import TINY

    path = os.path.join(model_dir, layout.TRAIN_INFO_FILE)
    if not os.path.isfile(path):
        return None, f"no zero-shot reference: the model has no {layout.TRAIN_INFO_FILE}"
    with open(path, encoding="utf-8") as f:
        config = json.load(f).get("config", {})
    if config.get("architecture") == "xgboost":
        return None, "no zero-shot reference: an XGBoost candidate has no text encoder"
    preset = str(config.get("encoder_preset", ""))
    if not preset or preset == TINY:
        return None, (
            f"no zero-shot reference: the candidate's encoder {preset or '(none)'!r} starts "
            "from random weights"
        )
    name = os.path.basename(os.path.normpath(preset)) if os.path.isdir(preset) else preset
    saved = os.path.join(model_dir, layout.ENCODER_PRESET_DIR)
    frozen = str((config.get("ranker") or {}).get("fine_tune_layers", "")) == "0"
    if frozen and os.path.isdir(saved):
        load = saved  # the encoder as trained with: frozen, so as it started
    elif os.path.isdir(preset) or not os.path.isabs(preset):
        load = preset  # fine-tuned: the untrained one is the preset it started from
    else:
        return None, f"no zero-shot reference: the starting preset {preset} is not reachable"
    return ZeroShotEncoder(
        name=f"{ZERO_SHOT} {name}",
        preset=load,
        query_length=int(config.get("query_length", 16)),
        product_length=int(config.get("product_length", 48)),
    ), ""


def score_references(
    examples_dir: str, raw_schema: S.RawSchema, model_dir: str, cache_dir: str
) -> tuple[dict, list[str]]:
    """({reference name: ScoredSplit} on the test split of `examples_dir`, notes on the
    references left out): every feature the schema marks `relevance_score`, BM25 of the
    query against the titles (the catalog: the titles of every split), and the zero-shot
    cosine of the candidate's encoder (zero_shot_encoder), encoded through a text cache in
    `cache_dir`."""
    from components.step_log import progress

    pairs = read_pairs(examples_dir, raw_schema)
    tasks = raw_schema.task_names
    if pairs.empty:
        return {}, ["no references: the test split is empty"]
    scores: dict[str, np.ndarray] = {}
    for feature in raw_schema.relevance_scores:
        scores[feature] = feature_scores(pairs, feature)
    titles = [*pairs[S.TITLE]]
    for split in S.SPLITS:
        if split != "test" and _has_split(examples_dir, split):
            titles += list(read_pairs(examples_dir, raw_schema, split)[S.TITLE])
    scores[BM25] = bm25_scores(pairs, titles)
    encoder, note = zero_shot_encoder(model_dir)
    notes = [note] if note else []
    if encoder is not None:
        progress(f"encoding the test pairs with {encoder.name}")
        scores[encoder.name] = zero_shot_scores(
            pairs, encoder.preset, cache_dir, encoder.query_length, encoder.product_length
        )
    return {name: as_scored(pairs, value, tasks) for name, value in scores.items()}, notes


def _has_split(examples_dir: str, split: str) -> bool:
    import tensorflow as tf

    return bool(tf.io.gfile.glob(layout.raw_split_pattern(examples_dir, split)))


@dataclasses.dataclass(frozen=True)
class ReferenceComparison:
    """The candidate against the best reference on one task.

    Args:
        reference: the reference with the highest mean NDCG@5 on the task.
        candidate_value: the candidate's mean NDCG@5 (NaN when undefined).
        reference_value: the reference's mean NDCG@5 (NaN when undefined).
        paired: candidate - reference in NDCG@5 over the test queries with a positive label;
            None when the candidate's predictions are not finite.
        p_less: one-sided p-value of "the candidate is below the reference" (paired t-test);
            NaN when undefined (fewer than two queries, or all differences equal).
    """

    reference: str
    candidate_value: float
    reference_value: float
    paired: PairedComparison | None
    p_less: float

    def to_dict(self) -> dict:
        def finite(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "reference": self.reference,
            "candidate": finite(self.candidate_value),
            "reference_value": finite(self.reference_value),
            "p_less": finite(self.p_less),
            "paired": None if self.paired is None else self.paired.to_dict(),
        }


def compare_with_references(
    candidate,
    candidate_metrics: Mapping[str, float],
    references: Mapping,
    reference_metrics: Mapping[str, Mapping[str, float]],
    confidence: float = 0.95,
) -> dict[str, ReferenceComparison | None]:
    """Per task of the candidate (a ScoredSplit), the candidate against the reference with
    the highest mean NDCG@5 on that task (`references`: name -> ScoredSplit of the same
    split, `reference_metrics` their compute_metrics); None for a task no reference has a
    defined NDCG@5 on."""
    result: dict[str, ReferenceComparison | None] = {}
    for task in candidate.tasks:
        key = f"{task}/{REFERENCE_METRIC}"
        values = {name: float(m[key]) for name, m in reference_metrics.items()}
        defined = {name: v for name, v in values.items() if not math.isnan(v)}
        if not defined:
            result[task] = None
            continue
        best = max(defined, key=defined.__getitem__)  # the first named wins a tie
        reference = references[best]
        paired = None
        if np.all(np.isfinite(candidate.predictions[task])):
            paired = paired_comparison(
                ndcg_per_query(
                    candidate.query, candidate.labels[task], candidate.predictions[task],
                    REFERENCE_K,
                ),
                ndcg_per_query(
                    reference.query, reference.labels[task], reference.predictions[task],
                    REFERENCE_K,
                ),
                confidence,
            )  # fmt: skip
        result[task] = ReferenceComparison(
            reference=best,
            candidate_value=float(candidate_metrics[key]),
            reference_value=defined[best],
            paired=paired,
            p_less=math.nan if paired is None else one_sided_p_less(paired),
        )
    return result
