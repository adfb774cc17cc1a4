"""The Beam ingest job: read, validate, filter, split and write TFRecords.

    files -> ReadRecords -> Validate -+-> kept -> split by query -> tf.Example -> train/eval/test
                                      +-> dead-letter JSON lines
                                      +-> outcome events -> counted -> counts.json

Output directory (names from `components.layout`):
    train/ eval/ test/   data-NNNNN-of-NNNNN.tfrecord.gz (gzip TFRecords of tf.train.Example)
    dead_letter/         dead_letter-NNNNN-of-NNNNN.jsonl
    schema.json          the RawSchema the rows were validated against
    counts.json          IngestCounts
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components import layout
from components import schema as schema_lib
from components.beam_runner import make_pipeline
from components.ingest import counts as counts_lib
from components.ingest import errors, examples, sources, split, validate
from components.ingest.counts import IngestCounts
from components.ingest.errors import IngestError
from components.ingest.readers import RawRecord, ReadRecords

_EVENTS, _DEAD = "events", "dead_letter"
_EVENTS_FILE = ".ingest_events.json"  # the counted events, read back by the driver
DEAD_LETTER_PREFIX = "dead_letter"
DEAD_LETTER_SUFFIX = ".jsonl"

logger = logging.getLogger(__name__)


def dead_letter_pattern(output_dir: str) -> str:
    """Glob matching every dead-letter shard under an ingest output directory."""
    return os.path.join(
        output_dir, layout.DEAD_LETTER_DIR, f"{DEAD_LETTER_PREFIX}-*{DEAD_LETTER_SUFFIX}"
    )


def read_dead_letters(output_dir: str) -> list[dict[str, Any]]:
    """Every dead-letter record of an ingest run, ordered by source and row."""
    records = []
    for meta in FileSystems.match([dead_letter_pattern(output_dir)])[0].metadata_list:
        with FileSystems.open(meta.path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            records.extend(
                json.loads(line) for line in fh.read().decode("utf-8").splitlines() if line
            )
    return sorted(records, key=lambda r: (r["source"], r["row"]))


class _Validate(beam.DoFn):
    """RawRecord -> (split, row) for kept rows; dead letters and outcome events on side outputs."""

    def __init__(self, schema: schema_lib.RawSchema, encoding: str, funnel_policy: str) -> None:
        self._schema = schema
        self._encoding = encoding
        self._funnel_policy = funnel_policy

    def process(self, record: RawRecord) -> Iterator[Any]:
        checked = validate.check_record(record, self._schema, self._encoding, self._funnel_policy)
        yield beam.pvalue.TaggedOutput(_EVENTS, counts_lib.ROWS_READ_EVENT)
        if checked.clipped:
            yield beam.pvalue.TaggedOutput(_EVENTS, counts_lib.CLIPPED_EVENT)
        if checked.outcome == validate.DEAD_LETTER:
            reason = checked.dead_letter["reason"]
            yield beam.pvalue.TaggedOutput(_EVENTS, counts_lib.dead_letter_event(reason))
            yield beam.pvalue.TaggedOutput(_DEAD, checked.dead_letter)
        elif checked.outcome == validate.FILTERED:
            yield beam.pvalue.TaggedOutput(_EVENTS, counts_lib.FILTERED_EVENT)
        else:
            yield beam.pvalue.TaggedOutput(_EVENTS, counts_lib.KEPT_EVENT)
            yield split.split_of(checked.row[schema_lib.QUERY]), checked.row


def _split_index(keyed: tuple[str, dict], num_partitions: int) -> int:
    return schema_lib.SPLITS.index(keyed[0])


def _serialize(keyed: tuple[str, dict], schema: schema_lib.RawSchema) -> bytes:
    return examples.to_example(keyed[1], schema)


def _split_query(keyed: tuple[str, dict]) -> tuple[str, str]:
    return keyed[0], split.normalize_query(keyed[1][schema_lib.QUERY])


def build_pipeline(
    pipeline: beam.Pipeline,
    inputs: Sequence[sources.InputFile],
    output_dir: str,
    schema: schema_lib.RawSchema,
    encoding: str,
    funnel_policy: str,
) -> None:
    """Add the ingest transforms to `pipeline` (inputs already checked by `resolve_inputs`)."""
    checked = (
        pipeline
        | "Files" >> beam.Create([(f.path, f.format) for f in inputs])
        | "SpreadFiles" >> beam.Reshuffle()
        | "Read" >> beam.ParDo(ReadRecords(encoding, schema))
        | "Validate"
        >> beam.ParDo(_Validate(schema, encoding, funnel_policy)).with_outputs(
            _EVENTS, _DEAD, main="kept"
        )
    )
    kept = checked.kept
    parts = kept | "BySplit" >> beam.Partition(_split_index, len(schema_lib.SPLITS))
    for name, part in zip(schema_lib.SPLITS, parts, strict=True):
        _ = (
            part
            | f"ToExample[{name}]" >> beam.Map(_serialize, schema=schema)
            | f"Write[{name}]"
            >> beam.io.WriteToTFRecord(
                layout.split_prefix(output_dir, name), file_name_suffix=layout.RECORD_SUFFIX
            )
        )
    split_rows = kept | "SplitRows" >> beam.Map(lambda kv: counts_lib.split_rows_event(kv[0]))
    split_queries = (
        kept
        | "SplitQuery" >> beam.Map(_split_query)
        | "DistinctQueries" >> beam.Distinct()
        | "SplitQueries" >> beam.Map(lambda kv: counts_lib.split_queries_event(kv[0]))
    )
    _ = (
        (checked[_EVENTS], split_rows, split_queries)
        | "AllEvents" >> beam.Flatten()
        | "CountEvents" >> beam.combiners.Count.PerElement()
        | "EventTable" >> beam.combiners.ToDict()
        | "EventJson" >> beam.Map(json.dumps, sort_keys=True)
        | "WriteEvents"
        >> beam.io.WriteToText(
            os.path.join(output_dir, _EVENTS_FILE), shard_name_template="", num_shards=1
        )
    )
    _ = (
        checked[_DEAD]
        | "DeadLetterJson" >> beam.Map(json.dumps, ensure_ascii=False, default=str)
        | "WriteDeadLetter"
        >> beam.io.WriteToText(
            os.path.join(output_dir, layout.DEAD_LETTER_DIR, DEAD_LETTER_PREFIX),
            file_name_suffix=DEAD_LETTER_SUFFIX,
        )
    )


def _delete_matching(patterns: Sequence[str]) -> None:
    paths = [m.path for r in FileSystems.match(list(patterns)) for m in r.metadata_list]
    if paths:
        FileSystems.delete(paths)


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as fh:
        fh.write(text.encode("utf-8"))


def _ensure_split_files(output_dir: str) -> None:
    """Give every split at least one (empty) shard, so downstream globs always match."""
    for name in schema_lib.SPLITS:
        if not FileSystems.match([layout.split_pattern(output_dir, name)])[0].metadata_list:
            path = f"{layout.split_prefix(output_dir, name)}-00000-of-00001{layout.RECORD_SUFFIX}"
            FileSystems.create(path, compression_type=CompressionTypes.GZIP).close()


def run_ingest(
    input_pattern: str,
    output_dir: str,
    schema: schema_lib.RawSchema,
    input_format: str = "auto",
    encoding: str = "utf-8",
    funnel_policy: str = "reject",
    beam_args: Sequence[str] = (),
) -> IngestCounts:
    """Ingest the raw engagement log at `input_pattern` (a path or glob) into `output_dir`.

    `beam_args` are Beam pipeline options (e.g. "--runner=DataflowRunner"); without a runner
    the job runs locally in this process. Raises IngestError (a ValueError) before the job for
    unusable input: no matching file, an empty file, missing required columns, an unknown
    format, encoding or funnel policy; and after it when the files held no data rows. Outputs
    of an earlier run in `output_dir` (shards, dead letters, counts, schema) are replaced.
    """
    errors.check_funnel_policy(funnel_policy)
    inputs = sources.resolve_inputs(input_pattern, input_format, encoding, schema)
    events_path = os.path.join(output_dir, _EVENTS_FILE)
    _delete_matching(
        [layout.split_pattern(output_dir, s) for s in schema_lib.SPLITS]
        + [
            dead_letter_pattern(output_dir),
            events_path,
            os.path.join(output_dir, layout.COUNTS_FILE),
            os.path.join(output_dir, layout.SCHEMA_FILE),
        ]
    )
    logger.info("ingesting %d file(s) matching %s into %s", len(inputs), input_pattern, output_dir)
    with make_pipeline(beam_args) as pipeline:
        build_pipeline(pipeline, inputs, output_dir, schema, encoding, funnel_policy)
    with FileSystems.open(events_path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        events = json.loads(fh.read().decode("utf-8"))
    FileSystems.delete([events_path])
    counts = IngestCounts.from_events(events)  # checks read == kept + filtered + dead-lettered
    if counts.rows_read == 0:
        names = ", ".join(f.path for f in inputs)
        raise IngestError(f"no data rows in {names}: the input has a header or schema but no rows")
    _ensure_split_files(output_dir)
    _write_text(os.path.join(output_dir, layout.SCHEMA_FILE), schema.to_json())
    _write_text(os.path.join(output_dir, layout.COUNTS_FILE), counts.to_json())
    logger.info("ingest counts: %s", counts.summary())
    return counts
