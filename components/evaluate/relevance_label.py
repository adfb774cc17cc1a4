"""The evaluation's relevance label for logs without human grades: the engagement relevance
of components/transform/relevance.py (a debiased click rate and the pretrained encoder's
query-product similarity) of every test example, in the order `scoring.score_split` reads
them. The clicks are the count column of the schema's first task (the first stage after
impressions). The report's "relevance" rows rank each query's products by the model's score
against it (NDCG@k); no gate reads it."""

from __future__ import annotations

import tempfile

import numpy as np
import tensorflow as tf

from components.transform.preprocessing import (
    PRODUCT_TEXT_FIELDS,
    PRODUCT_TEXT_SEPARATOR,
    query_text,
)
from components.transform.relevance import encoder_similarity, engagement_relevance
from contract import schema as S

RELEVANCE = "relevance"  # the label's name in the metrics: "relevance/ndcg@5"


def engagement_labels(
    file_pattern: str, encoder_preset: str, schema: S.RawSchema, cache_dir: str | None = None
):
    """The 0-3 engagement relevance of every row of the raw split files matching
    `file_pattern` (Parquet, as ingest writes them; files in name order, rows in file order),
    with the similarity of `encoder_preset`; the clicks are the count column of `schema`'s
    first task (the split's schema.json)."""
    from components import raw_splits

    clicks = schema.tasks[0].count
    names = list(dict.fromkeys([S.QUERY, *PRODUCT_TEXT_FIELDS, clicks, S.IMPRESSIONS, S.POSITION]))
    files = sorted(tf.io.gfile.glob(file_pattern))
    columns: dict[str, list] = {name: [] for name in names}
    for batch in raw_splits.read_batches(files, names):
        for name in names:
            columns[name].extend(batch.column(name).to_pylist())
    if not columns[S.QUERY]:
        return np.zeros([0])
    queries = [v.decode("utf-8") for v in query_text(tf.constant(columns[S.QUERY])).numpy()]
    texts = [
        PRODUCT_TEXT_SEPARATOR.join(v.strip() for v in fields if v.strip())
        for fields in zip(*(columns[f] for f in PRODUCT_TEXT_FIELDS), strict=True)
    ]
    with tempfile.TemporaryDirectory(prefix="relevance-cache-") as scratch:
        similarity = encoder_similarity(queries, texts, encoder_preset, cache_dir or scratch)
    return engagement_relevance(
        np.array(columns[S.QUERY], dtype=object),
        np.asarray(columns[clicks], np.int64),
        np.asarray(columns[S.IMPRESSIONS], np.int64),
        np.asarray(columns[S.POSITION], np.float32),
        similarity,
    )
