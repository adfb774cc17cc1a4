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


def _spec(clicks: str) -> dict[str, tf.io.FixedLenFeature]:
    return {
        S.QUERY: tf.io.FixedLenFeature([], tf.string),
        **{f: tf.io.FixedLenFeature([], tf.string, default_value="") for f in PRODUCT_TEXT_FIELDS},
        clicks: tf.io.FixedLenFeature([], tf.int64),
        S.IMPRESSIONS: tf.io.FixedLenFeature([], tf.int64),
        S.POSITION: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    }


def engagement_labels(
    file_pattern: str, encoder_preset: str, schema: S.RawSchema, cache_dir: str | None = None
):
    """The 0-3 engagement relevance of every record matching `file_pattern` (raw tf.Examples,
    files in name order, records in file order), with the similarity of `encoder_preset`; the
    clicks are the count column of `schema`'s first task (the records' schema.json)."""
    clicks = schema.tasks[0].count
    spec = _spec(clicks)
    files = sorted(tf.io.gfile.glob(file_pattern))
    columns: dict[str, list] = {name: [] for name in spec}
    queries: list[str] = []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
        parsed = tf.io.parse_example(batch, spec)
        for name, value in parsed.items():
            columns[name].extend(value.numpy().tolist())
        queries.extend(v.decode("utf-8") for v in query_text(parsed[S.QUERY]).numpy())
    if not queries:
        return np.zeros([0])
    texts = [
        PRODUCT_TEXT_SEPARATOR.join(
            v.decode("utf-8").strip() for v in fields if v.decode("utf-8").strip()
        )
        for fields in zip(*(columns[f] for f in PRODUCT_TEXT_FIELDS), strict=True)
    ]
    with tempfile.TemporaryDirectory(prefix="relevance-cache-") as scratch:
        similarity = encoder_similarity(queries, texts, encoder_preset, cache_dir or scratch)
    return engagement_relevance(
        np.array([q.decode("utf-8") for q in columns[S.QUERY]], dtype=object),
        np.asarray(columns[clicks]),
        np.asarray(columns[S.IMPRESSIONS]),
        np.asarray(columns[S.POSITION]),
        similarity,
    )
