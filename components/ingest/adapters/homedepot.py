"""Home Depot Product Search Relevance (train.csv, ISO-8859-1) -> the raw engagement log.

The data has human relevance grades (mean of at least three raters, 1.0 to 3.0) but no
engagement, so engagement is simulated with the seeded click model of `click_model`, from the
grade g as r = (g - 1) / 2 in [0, 1], with its four text features (lexical_score,
title_words, query_words, catalog_queries).

The human grade is kept in the `relevance` column (ignored by ingest) so that ranking can also
be evaluated against it.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd

from components.ingest.adapters import click_model
from contract import schema as S

RELEVANCE = "relevance"
ENCODING = "iso-8859-1"
SCHEMA = click_model.SCHEMA
_SOURCE_COLUMNS = ("product_uid", "product_title", "search_term", "relevance")


def read_source(path: str | Path) -> pd.DataFrame:
    """train.csv or train.csv.zip of the competition, decoded as ISO-8859-1."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise ValueError(f"{path} should hold one CSV file, found {names}")
            raw = archive.read(names[0])
    else:
        raw = path.read_bytes()
    frame = pd.read_csv(io.BytesIO(raw), encoding=ENCODING, dtype={"product_uid": str})
    missing = [c for c in _SOURCE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is missing column(s) {missing}: is it the Home Depot train.csv?")
    return frame


def simulate(source: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The raw engagement log (one row per judged query-product pair), see the module doc."""
    frame = source.rename(
        columns={"search_term": S.QUERY, "product_uid": S.PRODUCT_ID, "product_title": S.TITLE}
    )[[S.QUERY, S.PRODUCT_ID, S.TITLE, RELEVANCE]].copy()
    grade = (frame[RELEVANCE].to_numpy(float) - 1.0) / 2.0
    return click_model.raw_log(frame, grade, seed, keep=(RELEVANCE,))
