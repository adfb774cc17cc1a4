"""Shared fixtures: small raw datasets in the ingest output layout."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_raw_example(row: dict, raw_schema) -> bytes:
    """A tf.Example as ingest writes it, from a dict with every contract column."""
    import tensorflow as tf

    from contract import schema as S

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode()]))

    def f(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

    feats = {c: b(row.get(c, "")) for c in S.TEXT_COLUMNS}
    for feat in raw_schema.ranking_features:
        if row.get(feat.name) is not None:
            feats[feat.name] = f(row[feat.name])
    feats[S.POSITION] = f(row.get(S.POSITION, 0.0))
    for c in raw_schema.funnel:
        feats[c] = i(row[c])
    for task in raw_schema.tasks:
        feats[task.name] = i(task.label(row[task.count]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def write_raw_dataset(root: str, rows_by_split: dict, raw_schema) -> str:
    """Write `rows_by_split` as an ingest output directory (a Parquet file per split, as
    ingest writes them, + schema.json)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components import raw_splits
    from components.ingest.columnar import KeptRows
    from contract import layout
    from contract import schema as S

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, layout.SCHEMA_FILE), "w") as fh:
        fh.write(raw_schema.to_json())
    text = S.TEXT_COLUMNS + ((S.MARKET,) if raw_schema.markets else ())
    for split, rows in rows_by_split.items():
        columns: dict = {c: [str(row.get(c, "")) for row in rows] for c in text}
        for name in raw_schema.feature_names:
            values = [row.get(name) for row in rows]
            columns[name] = np.array([np.nan if v is None else v for v in values], np.float64)
        for c in raw_schema.funnel:
            columns[c] = np.array([int(row[c]) for row in rows], np.int64)
        columns[S.POSITION] = np.array([float(row.get(S.POSITION, 0.0)) for row in rows])
        batch = raw_splits.to_record_batch(KeptRows(split, columns, set()), raw_schema)
        os.makedirs(layout.split_dir(root, split), exist_ok=True)
        pq.write_table(pa.Table.from_batches([batch]), layout.raw_shard_path(root, split, 0, 1))
    return root


def raw_examples(root: str, split: str) -> list[bytes]:
    """The rows of a raw split as serialized tf.Examples, in file and row order."""
    from components import raw_splits

    return [
        example
        for batch in raw_splits.read_batches(raw_splits.shards(root, split))
        for example in raw_splits.to_examples(batch)
    ]


@pytest.fixture
def raw_dataset_writer():
    return write_raw_dataset


def synthetic_rows(n: int, seed: int, query_offset: int = 0) -> list[dict]:
    """Rows with every contract column and a learnable signal: clicks follow lexical_score
    (click when lexical_score plus Gaussian noise of sd 0.15 exceeds 0.5)."""
    import numpy as np

    from contract import schema as S

    rng = np.random.default_rng(seed)
    words = ["red", "blue", "boots", "sofa", "couch", "shirt", "hoodie", "lamp", "desk", "oak"]
    rows = []
    for i in range(n):
        lexical = float(rng.random())
        clicks = int(lexical + rng.normal(0.0, 0.15) > 0.5)
        carts = clicks * int(rng.random() < 0.6)
        rows.append(
            {
                S.QUERY: f"{words[i % 10]} {words[(3 * i + query_offset) % 10]}",
                S.PRODUCT_ID: f"p{query_offset}-{i}",
                S.TITLE: " ".join(rng.choice(words, 4)),
                S.PRODUCT_TYPE: str(rng.choice(["Boots", "Sofa", "Lamp"])),
                S.BRAND: str(rng.choice(["Acme", "Zeta", "Nordic"])),
                S.COLOR: str(rng.choice(["red", "", "oak"])),
                S.GENDER: "",
                S.DESCRIPTION: "",
                "lexical_score": lexical,
                "price": float(rng.lognormal(3, 1)),
                "rating": float(rng.uniform(0, 5)),
                "review_count": int(rng.poisson(20)),
                "popularity": int(rng.poisson(50)),
                "discount": float(rng.random() * 0.5),
                S.IMPRESSIONS: 10,
                S.CLICKS: clicks,
                S.ADD_TO_CART: carts,
                S.PURCHASES: carts * int(rng.random() < 0.5),
            }
        )
    return rows


def synthetic_splits(train: int, eval_: int, test: int) -> dict:
    """Synthetic rows per split, each split with its own seed and queries."""
    return {
        "train": synthetic_rows(train, 0),
        "eval": synthetic_rows(eval_, 1, 1),
        "test": synthetic_rows(test, 2, 2),
    }


def transformed_dataset(root, rows_by_split: dict, raw_schema) -> dict:
    """Write raw splits under `root` and run the real transform job; returns the directories."""
    from components.transform.transform import run_transform

    dirs = {name: str(root / name) for name in ("raw", "tft", "tx", "tmp")}
    write_raw_dataset(dirs["raw"], rows_by_split, raw_schema)
    run_transform(dirs["raw"], dirs["tft"], dirs["tx"], temp_dir=dirs["tmp"])
    return dirs


# A small MLPR for training tests: the frozen random "tiny" encoder, narrow experts and towers.
SMALL_RANKER = {
    "projection_dim": 16,
    "num_shared_experts": 2,
    "expert_units": (32, 16),
    "tower_units": (8,),
}
TINY_TRAINING = dict(
    architecture="mlpr",
    fine_tune_layers="0",
    encoder_preset="tiny",
    batch_size=64,
    precision="float32",
)
