"""The Beam ingest job: read, validate, filter, split and write TFRecords, as named
PTransforms (each tested on its own with Beam's TestPipeline):

    files -> ReadRows -> ValidateRows -+-> kept -> WriteSplits (by query) -> train/eval/test
                            ^          +-> dead-letter JSON lines
                            |          +-> outcome events -> CountEvents -> counts.json
    files -> ReadRows -> FindDuplicatePairs (first row of each pair that comes twice)

A (query, product_id) pair must come once: the first occurrence (by file, then row) is
validated as usual and every later one is dead-lettered as `duplicate_pair`, naming the first.
Finding them reads the files twice (the second pass keeps only the pair and its position), so
the rows themselves stream; the per-pair state of that pass grows with the distinct pairs.

Output directory (names from `contract.layout`):
    train/ eval/ test/   data-NNNNN-of-NNNNN.tfrecord.gz (gzip TFRecords of tf.train.Example)
    dead_letter/         dead_letter-NNNNN-of-NNNNN.jsonl
    schema.json          the RawSchema the rows were validated against
    counts.json          IngestCounts
    statistics.json      per-split statistics and drift findings (`statistics`)
    statistics.md        the same as a readable report
"""

from __future__ import annotations

import collections
import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from components.beam_runner import make_pipeline
from components.ingest import counts as counts_lib
from components.ingest import errors, examples, sources, split, statistics, validate
from components.ingest.counts import IngestCounts
from components.ingest.errors import IngestError
from components.ingest.readers import RawRecord, ReadRecords, UnreadableFile
from contract import layout
from contract import schema as S

_EVENTS, _DEAD = "events", "dead_letter"
_EVENTS_FILE = ".ingest_events.json"  # the counted events, read back by the driver
_STATISTICS_PART = ".ingest_statistics.json"  # per-split statistics, read back by the driver
DEAD_LETTER_PREFIX = "dead_letter"
DEAD_LETTER_SUFFIX = ".jsonl"

logger = logging.getLogger(__name__)


class _KnownInputErrors(logging.Filter):
    """Beam logs every exception of a DoFn with its traceback before re-raising it. An
    UnreadableFile is the input's fault and run_ingest reports it in one line, so its
    traceback is not logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _unreadable_file(record.exc_info[1]))


logging.getLogger("apache_beam.runners.common").addFilter(_KnownInputErrors())


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


def _pair_key(record: RawRecord) -> tuple[str, str] | None:
    """The (query, product_id) of a parsed row: the query normalised as for the split
    (split.normalize_query), the id stripped as validation strips it; None when absent."""
    if record.values is None:
        return None
    query, product = record.values.get(S.QUERY), record.values.get(S.PRODUCT_ID)
    if query is None or product is None:
        return None
    return split.normalize_query(str(query)), str(product).strip()


def _pair_digest(key: tuple[str, str] | None) -> bytes | None:
    """A 16-byte digest of a (query, product_id) pair: the state kept per distinct pair while
    duplicates are found is this and three integers, not the strings (collisions: ~2^-64 for
    billions of pairs)."""
    if key is None or not key[0] or not key[1]:
        return None
    # surrogateescape: text the reader could not decode keeps its bytes here (and is
    # dead-lettered by validation), instead of failing the digest.
    pair = f"{key[0]}\x1f{key[1]}".encode("utf-8", "surrogateescape")
    return hashlib.blake2b(pair, digest_size=16).digest()


def _pair_position(record: RawRecord, file_index: dict[str, int]):
    digest = _pair_digest(_pair_key(record))
    if digest is not None:
        yield digest, (1, file_index[record.source], record.row)


class _FirstAndCount(beam.CombineFn):
    """(1, file index, row) values -> (count, first file index, first row)."""

    def create_accumulator(self):
        return (0, -1, -1)

    def add_input(self, acc, value):
        return self.merge_accumulators([acc, value])

    def merge_accumulators(self, accumulators):
        count, first = 0, None
        for n, index, row in accumulators:
            count += n
            if index >= 0 and (first is None or (index, row) < first):
                first = (index, row)
        return (count, *first) if first else (count, -1, -1)

    def extract_output(self, acc):
        return acc


class _Validate(beam.DoFn):
    """RawRecord -> (split, row) for kept rows; dead letters on a side output, and the outcome
    counts of each bundle as (event, count) pairs on another (counted per bundle, not emitted
    per row: the counting then costs a few elements per bundle instead of several per row).
    `duplicates` maps each pair that comes more than once to its first (source, row)."""

    def __init__(
        self,
        schema: S.RawSchema,
        encoding: str,
        funnel_policy: str,
        files: Sequence[str] = (),
    ) -> None:
        self._schema = schema
        self._encoding = encoding
        self._funnel_policy = funnel_policy
        self._files = list(files)
        self._file_index = {path: i for i, path in enumerate(self._files)}
        self._events: collections.Counter = collections.Counter()

    def start_bundle(self) -> None:
        self._events = collections.Counter()

    def finish_bundle(self) -> Iterator[Any]:
        for event, count in self._events.items():
            yield beam.pvalue.TaggedOutput(
                _EVENTS, WindowedValue((event, count), MIN_TIMESTAMP, [GlobalWindow()])
            )
        self._events = collections.Counter()

    def process(self, record: RawRecord, duplicates: dict) -> Iterator[Any]:
        events = self._events
        events[counts_lib.ROWS_READ_EVENT] += 1
        key = _pair_key(record) if duplicates else None
        first = duplicates.get(_pair_digest(key)) if key else None
        here = (self._file_index.get(record.source, -1), record.row)
        if first is not None and tuple(first) != here:
            query, product = key
            detail = (
                f"the pair (query {query!r}, product_id {product!r}) already came in row "
                f"{first[1]} of {os.path.basename(self._files[first[0]])}"
            )
            reason = errors.DUPLICATE_PAIR
            events[counts_lib.dead_letter_event(reason)] += 1
            yield beam.pvalue.TaggedOutput(
                _DEAD, validate.dead_letter(record, reason, None, detail)
            )
            return
        checked = validate.check_record(record, self._schema, self._encoding, self._funnel_policy)
        if checked.clipped:
            events[counts_lib.CLIPPED_EVENT] += 1
        if checked.outcome == validate.DEAD_LETTER:
            events[counts_lib.dead_letter_event(checked.dead_letter["reason"])] += 1
            yield beam.pvalue.TaggedOutput(_DEAD, checked.dead_letter)
        elif checked.outcome == validate.FILTERED:
            events[counts_lib.FILTERED_EVENT] += 1
        else:
            which = split.split_of(checked.row[S.QUERY])
            events[counts_lib.KEPT_EVENT] += 1
            events[counts_lib.split_rows_event(which)] += 1
            yield which, checked.row


def _split_index(keyed: tuple[str, dict], num_partitions: int) -> int:
    return S.SPLITS.index(keyed[0])


def _serialize(keyed: tuple[str, dict], schema: S.RawSchema) -> bytes:
    return examples.to_example(keyed[1], schema)


def _split_query(keyed: tuple[str, dict]) -> tuple[str, str]:
    return keyed[0], split.normalize_query(keyed[1][S.QUERY])


class ReadRows(beam.PTransform):
    """(path, format) of each input file -> a RawRecord per row, the files spread over
    workers."""

    def __init__(self, files: Sequence[tuple[str, str]], encoding: str, schema, label=None):
        super().__init__(label)
        self._files, self._encoding, self._schema = list(files), encoding, schema

    def expand(self, pipeline):
        return (
            pipeline
            | "Files" >> beam.Create(self._files)
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadRecords(self._encoding, self._schema))
        )


class FindDuplicatePairs(beam.PTransform):
    """RawRecords -> (pair digest, (file index, row) of its first row), for each (query,
    product_id) pair that comes more than once (the query normalised)."""

    def __init__(self, file_index: dict[str, int], label=None):
        super().__init__(label)
        self._file_index = file_index

    def expand(self, records):
        return (
            records
            | "PairPositions" >> beam.FlatMap(_pair_position, file_index=self._file_index)
            | "FirstPerPair" >> beam.CombinePerKey(_FirstAndCount())
            | "Duplicated" >> beam.Filter(lambda kv: kv[1][0] > 1)
            | "FirstOfDuplicated" >> beam.Map(lambda kv: (kv[0], kv[1][1:]))
        )


class ValidateRows(beam.PTransform):
    """RawRecords -> tagged outputs: "kept" ((split, typed row) of each usable row),
    "dead_letter" (dead letters: bad rows and later copies of a duplicated pair) and "events" ((event,
    count) per bundle). `duplicates` is FindDuplicatePairs' output."""

    def __init__(self, schema, encoding: str, funnel_policy: str, files, duplicates, label=None):
        super().__init__(label)
        self._validate = _Validate(schema, encoding, funnel_policy, list(files))
        self._duplicates = duplicates

    def expand(self, records):
        return records | "Validate" >> beam.ParDo(
            self._validate, duplicates=beam.pvalue.AsDict(self._duplicates)
        ).with_outputs(_EVENTS, _DEAD, main="kept")


class WriteSplits(beam.PTransform):
    """(split, row) -> one set of tf.Example TFRecord shards per split under `output_dir`."""

    def __init__(self, output_dir: str, schema, label=None):
        super().__init__(label)
        self._output_dir, self._schema = output_dir, schema

    def expand(self, kept):
        parts = kept | "BySplit" >> beam.Partition(_split_index, len(S.SPLITS))
        for name, part in zip(S.SPLITS, parts, strict=True):
            _ = (
                part
                | f"ToExample[{name}]" >> beam.Map(_serialize, schema=self._schema)
                | f"Write[{name}]"
                >> beam.io.WriteToTFRecord(
                    layout.split_prefix(self._output_dir, name),
                    file_name_suffix=layout.RECORD_SUFFIX,
                )
            )
        return kept.pipeline


class CountEvents(beam.PTransform):
    """The bundles' (event, count) pairs and the distinct queries of each split -> one JSON
    object of totals (counts.json's source)."""

    def expand(self, inputs):
        events, kept = inputs
        split_queries = (
            kept
            | "SplitQuery" >> beam.Map(_split_query)
            | "DistinctQueries" >> beam.Distinct()
            | "SplitQueries" >> beam.Map(lambda kv: (counts_lib.split_queries_event(kv[0]), 1))
        )
        return (
            (events, split_queries)
            | "AllEvents" >> beam.Flatten()
            | "CountEvents" >> beam.CombinePerKey(sum)
            | "EventTable" >> beam.combiners.ToDict()
            | "EventJson" >> beam.Map(json.dumps, sort_keys=True)
        )


def build_pipeline(
    pipeline: beam.Pipeline,
    inputs: Sequence[sources.InputFile],
    output_dir: str,
    schema: S.RawSchema,
    encoding: str,
    funnel_policy: str,
) -> None:
    """Add the ingest transforms to `pipeline` (inputs already checked by `resolve_inputs`)."""
    files = [(f.path, f.format) for f in inputs]
    file_index = {f.path: i for i, f in enumerate(inputs)}  # inputs come sorted by path
    duplicates = (
        pipeline
        | "ReadPairs" >> ReadRows(files, encoding, schema)
        | "FindDuplicatePairs" >> FindDuplicatePairs(file_index)
    )
    checked = (
        pipeline
        | "ReadRows" >> ReadRows(files, encoding, schema)
        | "ValidateRows"
        >> ValidateRows(schema, encoding, funnel_policy, [f.path for f in inputs], duplicates)
    )
    kept = checked.kept
    _ = kept | "WriteSplits" >> WriteSplits(output_dir, schema)
    _ = (
        kept
        | "SplitStatistics" >> beam.CombinePerKey(statistics.SplitStatistics(schema))
        | "StatisticsTable" >> beam.combiners.ToDict()
        | "StatisticsJson" >> beam.Map(json.dumps)
        | "WriteStatistics"
        >> beam.io.WriteToText(
            os.path.join(output_dir, _STATISTICS_PART), shard_name_template="", num_shards=1
        )
    )
    _ = (
        (checked[_EVENTS], kept)
        | "CountEvents" >> CountEvents()
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


def _delete_temporary(output_dir: str) -> None:
    """The beam-temp-* folders that the write sinks of a failed run leave behind."""
    pattern = os.path.join(output_dir, "beam-temp-*")
    if "://" not in output_dir:  # a local folder (empty temporary folders too)
        found = set(glob.glob(pattern))
    else:  # an object store: the prefixes of the temporary objects
        found = {
            m.path[: m.path.index("/", m.path.index("beam-temp-"))]
            for m in FileSystems.match([os.path.join(pattern, "*")])[0].metadata_list
        }
    if found:
        FileSystems.delete(sorted(found))


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as fh:
        fh.write(text.encode("utf-8"))


def _ensure_split_files(output_dir: str) -> None:
    """Give every split at least one (empty) shard, so downstream globs always match."""
    for name in S.SPLITS:
        if not FileSystems.match([layout.split_pattern(output_dir, name)])[0].metadata_list:
            path = f"{layout.split_prefix(output_dir, name)}-00000-of-00001{layout.RECORD_SUFFIX}"
            FileSystems.create(path, compression_type=CompressionTypes.GZIP).close()


def run_ingest(
    input_pattern: str | Sequence[str],
    output_dir: str,
    schema: S.RawSchema,
    input_format: str = "auto",
    encoding: str = "utf-8",
    funnel_policy: str = "reject",
    beam_args: Sequence[str] = (),
    max_bad_share: float = 1.0,
) -> IngestCounts:
    """Ingest the raw engagement log at `input_pattern` (a path or glob, or several) into
    `output_dir`.

    `beam_args` are Beam pipeline options (e.g. "--runner=DataflowRunner"); without a runner
    the job runs locally in this process. Raises IngestError (a ValueError) before the job for
    unusable input: no matching file, an empty file, missing required columns, an unknown
    format, encoding or funnel policy; and after it when the files held no data rows. Outputs
    of an earlier run in `output_dir` (shards, dead letters, counts, schema) are replaced.

    `max_bad_share`: when more than this share of the rows read is dead-lettered, raise
    IngestError with a summary (counts by reason and the first dead letters) after writing
    everything, so the pipeline stops rather than train on what is left.
    """
    errors.check_funnel_policy(funnel_policy)
    errors.check_bad_share(max_bad_share)
    inputs = sources.resolve_inputs(input_pattern, input_format, encoding, schema)
    events_path = os.path.join(output_dir, _EVENTS_FILE)
    _delete_matching(
        [layout.split_pattern(output_dir, s) for s in S.SPLITS]
        + [
            dead_letter_pattern(output_dir),
            events_path,
            os.path.join(output_dir, _STATISTICS_PART),
            os.path.join(output_dir, statistics.STATISTICS_FILE),
            os.path.join(output_dir, statistics.REPORT_FILE),
            os.path.join(output_dir, layout.COUNTS_FILE),
            os.path.join(output_dir, layout.SCHEMA_FILE),
        ]
    )
    logger.info("ingesting %d file(s) matching %s into %s", len(inputs), input_pattern, output_dir)
    try:
        with make_pipeline(beam_args) as pipeline:
            build_pipeline(pipeline, inputs, output_dir, schema, encoding, funnel_policy)
    except Exception as err:
        unreadable = _unreadable_file(err)
        if unreadable is None:
            raise
        _delete_temporary(output_dir)
        raise IngestError(unreadable) from None
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
    stats = _write_statistics(output_dir, counts)
    for finding in stats["drift"]:
        logger.warning("drift: %s", finding["message"])
    share = counts.rows_dead_letter / counts.rows_read
    if share > max_bad_share:
        raise IngestError(_too_many_bad_rows(counts, share, max_bad_share, output_dir))
    return counts


def _unreadable_file(err: BaseException) -> str | None:
    """The message of the UnreadableFile behind `err`, which a runner may re-raise wrapped in
    its own exception (or only as text, from a remote worker); None when it is no such error."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, UnreadableFile):
            return str(err.args[0]).split("\n")[0]
        err = err.__cause__ or err.__context__
    return None


def _write_statistics(output_dir: str, counts: IngestCounts) -> dict:
    part = os.path.join(output_dir, _STATISTICS_PART)
    with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        per_split = json.loads(fh.read().decode("utf-8") or "{}")
    FileSystems.delete([part])
    stats = statistics.assemble(per_split, counts)
    _write_text(os.path.join(output_dir, statistics.STATISTICS_FILE), json.dumps(stats, indent=2))
    _write_text(os.path.join(output_dir, statistics.REPORT_FILE), statistics.report(stats))
    return stats


def _too_many_bad_rows(counts: IngestCounts, share: float, limit: float, output_dir: str) -> str:
    reasons = sorted(((n, r) for r, n in counts.dead_letter_by_reason.items() if n), reverse=True)
    examples = [d["message"] for d in read_dead_letters(output_dir)[:3]]
    lines = [
        f"{counts.rows_dead_letter} of {counts.rows_read} rows ({share:.1%}) could not be used, "
        f"more than max_bad_share {limit:.1%}; stopping before training on the rest.",
        "By reason: " + ", ".join(f"{r} {n}" for n, r in reasons),
        *(f"  e.g. {m}" for m in examples),
        f"Every rejected row, with the reason: {dead_letter_pattern(output_dir)}",
    ]
    return "\n".join(lines)
