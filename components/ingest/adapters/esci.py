"""Amazon Shopping Queries (ESCI) -> the raw engagement log.

The ESCI files (`shopping_queries_dataset_examples` joined with `..._products`, or one CSV or
Parquet holding both, as in ../shared/data/esci_sample) judge query-product pairs with a label:
Exact, Substitute, Complement or Irrelevant (also written E, S, C, I). There is no engagement,
so it is simulated with the seeded click model of `click_model`, from the grade r:

    Exact 1.0, Substitute 0.5, Complement 0.25, Irrelevant 0.0

(a substitute still draws clicks, a complement fewer, an irrelevant product almost none). Brand,
color and description come from the product columns; HTML tags are stripped from the
description. The grade on Home Depot's 1-3 scale (1 + 2 r: E 3, S 2, C 1.5, I 1) is kept in
the `relevance` column for evaluation against the human judgment. Only one locale is used per
log (`locale`, default "us").
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from components.ingest.adapters import click_model
from contract import schema as S

RELEVANCE = "relevance"
SCHEMA = click_model.SCHEMA
LABELS = {"E": "Exact", "S": "Substitute", "C": "Complement", "I": "Irrelevant"}
GRADE = {"Exact": 1.0, "Substitute": 0.5, "Complement": 0.25, "Irrelevant": 0.0}
_REQUIRED = ("query", "product_id", "product_title", "esci_label")
_RENAME = {
    "product_title": S.TITLE,
    "product_brand": S.BRAND,
    "product_color": S.COLOR,
    "product_description": S.DESCRIPTION,
}
_TAGS = re.compile(r"<[^>]+>")


def read_source(path: str | Path, products: str | Path | None = None) -> pd.DataFrame:
    """The ESCI examples as a CSV or Parquet file, joined on product_id (and product_locale)
    with the products file when it is separate."""

    def read(p) -> pd.DataFrame:
        p = Path(p)
        if p.suffix == ".parquet":
            return pd.read_parquet(p)
        return pd.read_csv(p, dtype={"product_id": str, "query_id": str}, keep_default_na=False)

    frame = read(path)
    if products is not None:
        catalog = read(products)
        keys = [k for k in ("product_id", "product_locale") if k in frame and k in catalog]
        frame = frame.merge(catalog, on=keys, how="left", suffixes=("", "_product"))
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path} is missing column(s) {missing}: is it the ESCI examples file (with the "
            "products joined, or given with --products)?"
        )
    return frame


def simulate(source: pd.DataFrame, seed: int = 0, locale: str | None = "us") -> pd.DataFrame:
    """The raw engagement log (one row per judged pair of `locale`; None: every locale)."""
    frame = source
    if locale is not None and "product_locale" in frame.columns:
        frame = frame[frame["product_locale"] == locale]
        if frame.empty:
            locales = sorted(source["product_locale"].unique())
            raise ValueError(f"no rows of locale {locale!r}; the file has {locales}")
    labels = frame["esci_label"].astype(str).str.strip().map(lambda v: LABELS.get(v, v))
    unknown = sorted(set(labels) - set(GRADE))
    if unknown:
        row = int(np.flatnonzero(~labels.isin(list(GRADE)))[0])
        raise ValueError(
            f"esci_label {unknown} not one of {sorted(GRADE)} or {sorted(LABELS)} "
            f"(first at data row {row + 1})"
        )
    columns = [c for c in ("query", "product_id", *_RENAME) if c in frame.columns]
    out = frame[columns].rename(columns=_RENAME).reset_index(drop=True)
    out[S.PRODUCT_ID] = out[S.PRODUCT_ID].astype(str)
    if S.DESCRIPTION in out:
        out[S.DESCRIPTION] = (
            out[S.DESCRIPTION].fillna("").astype(str).str.replace(_TAGS, " ", regex=True)
        )
        out[S.DESCRIPTION] = out[S.DESCRIPTION].str.split().str.join(" ")
    grade = labels.map(GRADE).to_numpy(float)
    out[RELEVANCE] = 1.0 + 2.0 * grade
    return click_model.raw_log(out, grade, seed, keep=(RELEVANCE,))
