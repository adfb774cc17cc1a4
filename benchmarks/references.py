"""Simple references scored on the same test pairs as the trained models (paper_tables.py):

- `lexical_score`: the ranking feature alone;
- `bm25`: Okapi BM25 (rank_bm25) of the query against the product titles, with the catalog
  (every title of the splits) as the corpus;
- `zero-shot`: the cosine of the query's and the product text's vectors from the text
  encoder preset with no training at all (mean pooling, as MLPR pools).

Each gives one score per pair, used for every task (a ranking within each query), in a
ScoredSplit like a model's, so the same metrics and paired tests apply.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from contract import layout
from contract import schema as S

LEXICAL, BM25, ZERO_SHOT = "lexical_score", "bm25", "zero-shot"
_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def read_pairs(examples_dir: str, raw_schema: S.RawSchema, split: str = "test") -> pd.DataFrame:
    """The raw pairs of one split as ingest wrote them (in its record order, as
    evaluate.score_split reads them): query, product id, title, the ranking features,
    impressions and labels, plus `query_text` and `product_text`, the texts the model reads
    (the query normalised and the product fields joined, as the transform does)."""
    import tensorflow as tf

    from components.transform.preprocessing import (
        PRODUCT_TEXT_FIELDS,
        PRODUCT_TEXT_SEPARATOR,
        query_text,
    )
    from contract.features import raw_feature_spec

    spec = raw_feature_spec(raw_schema, with_labels=True)
    files = sorted(tf.io.gfile.glob(layout.split_pattern(examples_dir, split)))
    if not files:
        raise FileNotFoundError(f"no {split} records in {examples_dir}")
    columns: dict[str, list] = {}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        for name, value in parsed.items():
            if isinstance(value, tf.SparseTensor):
                value = tf.sparse.to_dense(value, default_value=np.nan)
            columns.setdefault(name, []).append(np.asarray(value).reshape(len(batch), -1)[:, 0])
    frame = pd.DataFrame({k: np.concatenate(v) for k, v in columns.items()})
    for name, feature in spec.items():
        if feature.dtype == tf.string:
            frame[name] = [v.decode("utf-8") for v in frame[name]]
    # The query as the transform gives it the model (the same TensorFlow function).
    frame["query_text"] = [
        v.decode("utf-8") for v in query_text(tf.constant(list(frame[S.QUERY]))).numpy()
    ]
    fields = frame[list(PRODUCT_TEXT_FIELDS)].apply(lambda c: c.str.strip())
    frame["product_text"] = [
        PRODUCT_TEXT_SEPARATOR.join(v for v in row if v) for row in fields.itertuples(index=False)
    ]
    return frame


def lexical_scores(pairs: pd.DataFrame) -> np.ndarray:
    return pairs["lexical_score"].to_numpy(dtype=np.float64)


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


def as_scored(pairs: pd.DataFrame, scores: np.ndarray):
    """A ScoredSplit that ranks by `scores` for every task."""
    from components.evaluate.scoring import ScoredSplit

    scores = np.asarray(scores, dtype=np.float32)
    return ScoredSplit(
        query=pairs[S.QUERY].to_numpy(dtype=object),
        product_id=pairs[S.PRODUCT_ID].to_numpy(dtype=object),
        impressions=pairs[S.IMPRESSIONS].to_numpy(),
        labels={t: pairs[t].to_numpy() for t in S.DEFAULT_TASKS},
        predictions={t: scores for t in S.DEFAULT_TASKS},
        score=scores,
    )
