"""Shared helpers of the ingest tests: a hand-written log with known bad rows, TFRecord reading.

Imported by the test modules beside it (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import csv
import glob
import json
from pathlib import Path

from components.ingest import demo_data
from contract import layout
from contract import schema as S

# A header with every demo column plus one the contract does not know (ignored by ingest).
EXTRA_COLUMN = "campaign"
HEADER = [*demo_data.COLUMNS, EXTRA_COLUMN]


def good_row(**overrides: str) -> dict[str, str]:
    row = {
        S.QUERY: "red running shoes",
        S.PRODUCT_ID: "P1",
        S.TITLE: "Urban Stride men's running shoes, red",
        S.PRODUCT_TYPE: "running shoes",
        S.BRAND: "Urban Stride",
        S.COLOR: "red",
        S.GENDER: "men",
        S.DESCRIPTION: "Light shoes for daily runs.",
        "lexical_score": "1.0",
        "price": "89.5",
        "rating": "4.5",
        "review_count": "120",
        "popularity": "900",
        "discount": "0.1",
        S.IMPRESSIONS: "100",
        S.CLICKS: "10",
        S.ADD_TO_CART: "3",
        S.PURCHASES: "1",
        S.POSITION: "2.5",
        EXTRA_COLUMN: "spring",
    }
    row.update(overrides)
    return row


# Row number (1-based) -> row. Row 12 is written as a short raw line (malformed).
BAD_LOG = {
    1: good_row(),
    2: good_row(
        query="  Leather  Sofa ",
        product_id="P2",
        title='  Arbor Home "Oslo" sofa,\nthree-seater  ',
        product_type="sofa",
        gender="",
        impressions="50",
        clicks="0",
        add_to_cart="0",
        purchases="0",
        position="",
    ),
    3: good_row(
        query="trainers",
        product_id="P3",
        impressions="40.0",
        clicks="5",
        add_to_cart="0",
        purchases="0",
    ),
    4: good_row(
        query="oak coffee table",
        product_id="P4",
        impressions="5",
        clicks="1",
        add_to_cart="0",
        purchases="0",
    ),
    5: good_row(
        query="oak coffee table",
        product_id="P5",
        impressions="0",
        clicks="0",
        add_to_cart="0",
        purchases="0",
    ),
    6: good_row(product_id="P6", clicks="abc"),
    7: good_row(product_id="P7", title=""),
    8: good_row(product_id="P8", price="cheap"),
    9: good_row(product_id="P9", rating="7.5"),
    10: good_row(product_id="P10", impressions="-3"),
    11: good_row(
        query="trainers",
        product_id="P11",
        impressions="20",
        clicks="2",
        add_to_cart="2",
        purchases="4",
    ),
    12: None,
    13: good_row(product_id="P13", lexical_score=""),
    14: good_row(
        query="oak coffee table",
        product_id="P14",
        impressions="30",
        clicks="3",
        add_to_cart="1",
        purchases="0",
        description="",
    ),
}
MALFORMED_LINE = "oops,only,three"

# (row, reason, field) of every dead-lettered row with funnel_policy "reject".
BAD_LOG_DEAD_LETTERS = [
    (6, "not_an_integer", "clicks"),
    (7, "missing_value", "title"),
    (8, "not_a_number", "price"),
    (9, "out_of_range", "rating"),
    (10, "negative_count", "impressions"),
    (11, "funnel_violation", "purchases"),
    (12, "malformed_row", None),
    (13, "missing_value", "lexical_score"),
]


def write_bad_csv(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for row in BAD_LOG.values():
            if row is None:
                fh.write(MALFORMED_LINE + "\r\n")
            else:
                writer.writerow([row[c] for c in HEADER])
    return path


def _typed(value: str):
    """A CSV string as a JSON writer would type it."""
    if value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def write_bad_jsonl(path: Path) -> Path:
    """The same log as JSON lines (numbers typed, empty values null); row 12 is a JSON array."""
    lines = []
    for row in BAD_LOG.values():
        if row is None:
            lines.append("[1, 2, 3]")
        else:
            text = {c: row[c] for c in S.TEXT_COLUMNS}
            typed = {c: _typed(v) for c, v in row.items() if c not in S.TEXT_COLUMNS}
            lines.append(json.dumps(text | typed))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_split(
    output_dir: str | Path, split: str, raw_schema: S.RawSchema = S.DEMO_SCHEMA
) -> list[dict]:
    """Every row of a split as a tf.Example (`raw_splits.to_examples`), parsed with
    `contract.features.raw_feature_spec`, as plain Python dicts."""
    import tensorflow as tf

    from components import raw_splits
    from contract.features import raw_feature_spec

    files = sorted(glob.glob(layout.raw_split_pattern(str(output_dir), split)))
    assert files, f"no shard for split {split} in {output_dir}"
    spec = raw_feature_spec(raw_schema)
    rows = []
    for batch in raw_splits.read_batches(files, batch_size=1024):
        if not batch.num_rows:
            continue
        parsed = tf.io.parse_example(raw_splits.to_examples(batch), spec)
        columns = {}
        for name, tensor in parsed.items():
            if isinstance(tensor, tf.sparse.SparseTensor):
                columns[name] = tf.RaggedTensor.from_sparse(tensor).to_list()
            else:
                columns[name] = [
                    v.decode("utf-8") if isinstance(v, bytes) else v.item() for v in tensor.numpy()
                ]
        rows.extend(
            dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)
        )
    return rows


def read_all_splits(output_dir: str | Path) -> dict[str, list[dict]]:
    return {split: read_split(output_dir, split) for split in S.SPLITS}
