"""The transform on two local worker processes writes what it writes on one: the same
vocabularies and the same transformed records in every split (components/beam_runner.py).

The input is the demo shop's log in two files, ingested on two workers, so that each split
has two shards and both transform workers read one (a worker reads a shard whole). The
analyzers' partial sums then merge in another order; they are float64, rounded once to the
float32 z-scores (components/transform/preprocessing.py), so the records are equal bit for
bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from components.ingest import demo_data
from components.ingest.job import run_ingest
from components.transform.transform import run_transform
from contract import layout
from contract import schema as S


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("transform_workers")
    log = demo_data.generate(200, seed=4)
    half = len(log) // 2
    demo_data.write(log.iloc[:half], root / "inputs" / "a.csv")
    demo_data.write(log.iloc[half:], root / "inputs" / "b.csv")
    examples = root / "examples"
    two = ["--direct_num_workers=2"]
    run_ingest(str(root / "inputs" / "*.csv"), str(examples), S.DEMO_SCHEMA, beam_args=two)
    out = {}
    for name, args in (("one", ["--direct_num_workers=1"]), ("two", two)):
        graph, transformed = root / name / "graph", root / name / "transformed"
        run_transform(
            str(examples), str(graph), str(transformed), beam_args=args, temp_dir=str(root / "t")
        )
        out[name] = (graph, transformed)
    return out


def _bits(value) -> bytes:
    """A feature's value as bytes: a text as it is, a number (or vector) bit for bit."""
    return value if isinstance(value, bytes) else np.asarray(value).tobytes()


def _records(graph: Path, transformed: Path, split: str) -> list[tuple]:
    """Every transformed record of a split as a tuple of its features' bytes, sorted."""
    spec = tft.TFTransformOutput(str(graph)).transformed_feature_spec()
    files = tf.io.gfile.glob(layout.split_pattern(str(transformed), split))
    rows = []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1000):
        parsed = tf.io.parse_example(batch, spec)
        columns = {name: np.asarray(value) for name, value in sorted(parsed.items())}
        count = len(next(iter(columns.values())))
        rows += [tuple(_bits(column[i]) for column in columns.values()) for i in range(count)]
    return sorted(rows)


def test_both_splits_are_read_by_two_workers(runs):
    graph, transformed = runs["two"]
    for split in S.SPLITS:
        assert len(tf.io.gfile.glob(layout.split_pattern(str(transformed), split))) == 2, split


def test_two_workers_write_the_same_vocabularies_and_records(runs):
    one, two = (tft.TFTransformOutput(str(runs[name][0])) for name in ("one", "two"))
    vocabularies = sorted(
        path.name for path in (runs["one"][0] / "transform_fn" / "assets").iterdir()
    )
    assert vocabularies
    for name in vocabularies:
        assert two.vocabulary_by_name(name) == one.vocabulary_by_name(name), name
    assert two.transformed_feature_spec() == one.transformed_feature_spec()
    for split in S.SPLITS:
        records = _records(*runs["one"], split)
        assert records and _records(*runs["two"], split) == records, split
