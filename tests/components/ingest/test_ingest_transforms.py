"""The ingest job's PTransforms on small in-memory inputs, with Beam's TestPipeline."""

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from ingest_testlib import good_row

from components.ingest import counts, errors
from components.ingest.blocks import RowBlock
from components.ingest.columnar import pair_digest
from components.ingest.job import FindDuplicatePairs, ValidateRows
from components.ingest.readers import RawRecord
from components.ingest.split import split_of
from contract import schema as S

FILES = ["/logs/a.csv", "/logs/b.csv"]


def _record(source, row, **overrides):
    values = {k: str(v) for k, v in good_row(**overrides).items()}
    return RawRecord(source, row, values, values)


A_ROWS = [
    _record(FILES[0], 1, product_id="P1"),
    _record(FILES[0], 2, product_id="P2"),
    _record(FILES[0], 3, product_id="P3", clicks="abc"),
    _record(
        FILES[0], 4, product_id="P4", impressions="3", clicks="0", add_to_cart="0", purchases="0"
    ),
]
# a.csv as an Arrow block (pyarrow's reader), b.csv as a block of the row reader's records
BLOCKS = [
    RowBlock(FILES[0], 1, table=pa.Table.from_pylist([r.values for r in A_ROWS])),
    RowBlock(
        FILES[1],
        1,
        records=[_record(FILES[1], 1, product_id="P1", query="Red  RUNNING shoes")],  # P1 again
    ),
]


def test_find_duplicate_pairs_names_the_first_row_of_each_repeated_pair():
    digest = pair_digest("red running shoes", "P1")
    assert digest == pair_digest(" Red  RUNNING shoes\u200d", " P1 ")
    with TestPipeline() as pipeline:
        found = (
            pipeline
            | beam.Create(BLOCKS)
            | FindDuplicatePairs({path: i for i, path in enumerate(FILES)}, S.DEMO_SCHEMA)
        )
        assert_that(found, equal_to([(digest, (0, 1))]))


def test_validate_rows_keeps_splits_and_dead_letters():
    with TestPipeline() as pipeline:
        records = pipeline | "Records" >> beam.Create(BLOCKS)
        duplicates = records | FindDuplicatePairs(
            {path: i for i, path in enumerate(FILES)}, S.DEMO_SCHEMA
        )
        checked = records | ValidateRows(S.DEMO_SCHEMA, "utf-8", "reject", FILES, duplicates)
        kept = checked.kept | "Ids" >> beam.FlatMap(
            lambda k: ((k.split, p) for p in k.columns[S.PRODUCT_ID])
        )
        which = split_of("red running shoes")
        assert_that(kept, equal_to([(which, "P1"), (which, "P2")]), label="kept")
        dead = checked.dead_letter | "Reasons" >> beam.Map(
            lambda d: (d["source"], d["row"], d["reason"])
        )
        assert_that(
            dead,
            equal_to(
                [
                    (FILES[1], 1, errors.DUPLICATE_PAIR),
                    (FILES[0], 3, errors.NOT_AN_INTEGER),
                ]
            ),
            label="dead",
        )
        events = checked.events | beam.CombinePerKey(sum)
        assert_that(
            events,
            equal_to(
                [
                    (counts.ROWS_READ_EVENT, 5),
                    (counts.KEPT_EVENT, 2),
                    (counts.split_rows_event(which), 2),
                    (counts.FILTERED_EVENT, 1),
                    (counts.dead_letter_event(errors.DUPLICATE_PAIR), 1),
                    (counts.dead_letter_event(errors.NOT_AN_INTEGER), 1),
                ]
            ),
            label="events",
        )
