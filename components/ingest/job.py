"""The Beam ingest job: read, validate, filter, split and write Parquet, as named
PTransforms (each tested on its own with Beam's TestPipeline):

    files -> ReadRows -> ValidateRows -+-> kept -> WriteSplits (by query) -> train/eval/test
                            ^          +-> dead-letter JSON lines
                            |          +-> outcome events -> CountEvents -> counts.json
    files -> ReadRows -> FindDuplicatePairs (first row of each pair that comes twice)

Rows travel in blocks of a few thousand (`blocks.RowBlock`: Arrow tables from pyarrow's CSV,
JSON and Parquet readers, or the row reader's records), so Beam's cost per element is paid per
block; validation (`columnar`), the statistics and the Parquet writes run over columns.

A (query, product_id) pair must come once: the first occurrence (by file, then row) is
validated as usual and every later one is dead-lettered as `duplicate_pair`, naming the first.
Finding them reads the files twice (the second pass keeps only the pair's 16-byte digest and
its position, in numpy arrays, ~28 bytes per row), so the rows themselves stream.

Output directory (names from `contract.layout`):
    train/ eval/ test/   data-SSSSS-of-NNNNN.parquet: the kept rows of input file SSSSS of
                         NNNNN, typed (`components.raw_splits`)
    dead_letter/         dead_letter-NNNNN-of-NNNNN.jsonl
    schema.json          the RawSchema the rows were validated against
    counts.json          IngestCounts
    statistics.json      per-split statistics and drift findings (`statistics`)
    statistics/          the same (and more) in TFDV's formats, per split (`statistics_files`)
    statistics.md        readable views of them: Markdown, HTML, Facets Overview
    statistics.html
    facets_overview.html
"""

from __future__ import annotations

import collections
import glob
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from components import disk_faults, raw_splits
from components.beam_runner import INGEST_WORKER_BYTES, local_workers, make_pipeline
from components.ingest import (
    columnar,
    errors,
    sources,
    statistics,
    statistics_files,
)
from components.ingest import counts as counts_lib
from components.ingest.blocks import ReadBlocks, RowBlock
from components.ingest.counts import IngestCounts
from components.ingest.errors import IngestError
from components.ingest.readers import UnreadableFile
from components.step_log import progress
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
    UnreadableFile is the input's fault and run_ingest reports it in one line, and a disk
    fault (a full or read-only volume) the ingest step reports in one line, so their
    tracebacks are not logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        err = record.exc_info[1]
        return not (_unreadable_file(err) or disk_faults.find(err))


class _KnownInputErrorsOfWorkers(logging.Filter):
    """The same for a job on several local processes (`beam_runner`): each worker's log comes
    to this process as text, an UnreadableFile's traceback with it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _UNREADABLE_TEXT.search(record.getMessage()) is None


# How an UnreadableFile raised in another process reads in the traceback that comes back.
_UNREADABLE_TEXT = re.compile(
    rf"{re.escape(UnreadableFile.__module__)}\.{UnreadableFile.__name__}: ([^\n]*)"
)

logging.getLogger("apache_beam.runners.common").addFilter(_KnownInputErrors())
logging.getLogger("apache_beam.runners.portability.local_job_service").addFilter(
    _KnownInputErrorsOfWorkers()
)


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


class _ArrayLists(beam.CombineFn):
    """A combiner whose accumulator is a list of its numpy inputs, gathered as they come;
    subclasses merge and read them."""

    def create_accumulator(self):
        return []

    def add_input(self, acc, arrays):
        acc.append(arrays)
        return acc


class _DuplicatedPairs(_ArrayLists):
    """Pair tables (digest halves, file index, row: one numpy array each, a row per pair
    occurrence) -> [(digest, (file index, row) of its first row)] for each pair that comes
    more than once. The accumulator is a list of such tables: about 28 bytes per pair."""

    def merge_accumulators(self, accumulators):
        merged = [t for acc in accumulators for t in acc]
        return [_concatenate(merged)] if len(merged) > 1 else merged

    def extract_output(self, acc):
        if not acc:
            return []
        high, low, index, row = _concatenate(acc)
        order = np.lexsort((row, index, low, high))  # by pair, then position
        high, low, index, row = high[order], low[order], index[order], row[order]
        starts = np.flatnonzero(
            np.concatenate(([True], (high[1:] != high[:-1]) | (low[1:] != low[:-1]), [True]))
        )
        repeated = starts[:-1][np.diff(starts) > 1]
        return [
            (
                int(high[i]).to_bytes(8, "big") + int(low[i]).to_bytes(8, "big"),
                (int(index[i]), int(row[i])),
            )
            for i in repeated
        ]


def _concatenate(tables):
    return tuple(np.concatenate(parts) for parts in zip(*tables, strict=True))


_PAIR_SHARDS = 64  # keys of the duplicate search, so that runners can spread it


def _pair_tables(block: RowBlock, file_index: dict[str, int], schema: S.RawSchema):
    """A block -> (shard, pair table) per shard: the rows' digests split in two uint64 halves,
    with their file index and row."""
    digests = columnar.pair_digests(block, schema)
    rows = block.rows()
    present = [i for i, d in enumerate(digests) if d is not None]
    if not present:
        return
    packed = np.frombuffer(b"".join(digests[i] for i in present), dtype=">u8").reshape(-1, 2)
    high, low = packed[:, 0].astype(np.uint64), packed[:, 1].astype(np.uint64)
    row = np.asarray([rows[i] for i in present], np.int64)
    index = np.full(len(present), file_index[block.source], np.int32)
    shard = high % _PAIR_SHARDS
    for key in np.unique(shard):
        mask = shard == key
        yield int(key), (high[mask], low[mask], index[mask], row[mask])


class _Validate(beam.DoFn):
    """RowBlock -> `columnar.KeptRows` per split; dead letters on a side output, and the
    outcome counts of each bundle as (event, count) pairs on another. `duplicates` maps each
    pair that comes more than once to its first (file index, row)."""

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
        self._events: collections.Counter = collections.Counter()

    def start_bundle(self) -> None:
        self._events = collections.Counter()

    def finish_bundle(self) -> Iterator[Any]:
        for event, count in self._events.items():
            yield beam.pvalue.TaggedOutput(
                _EVENTS, WindowedValue((event, count), MIN_TIMESTAMP, [GlobalWindow()])
            )
        self._events = collections.Counter()

    def process(self, block: RowBlock, duplicates: dict) -> Iterator[Any]:
        outcome = columnar.check_block(
            block, self._schema, self._encoding, self._funnel_policy, duplicates, self._files
        )
        self._events.update(outcome.events)
        for letter in outcome.dead_letters:
            yield beam.pvalue.TaggedOutput(_DEAD, letter)
        file_index = self._files.index(block.source) if block.source in self._files else 0
        for kept in outcome.kept:
            kept.file_index, kept.first_row = file_index, _first_row(block)
            yield kept


def _first_row(block: RowBlock) -> int:
    if block.table is None and block.records:
        return block.records[0].row
    return block.first_row


def _split_index(kept: columnar.KeptRows, num_partitions: int) -> int:
    return S.SPLITS.index(kept.split)


def _query_digests(kept: columnar.KeptRows) -> tuple[str, np.ndarray]:
    """(split, 16-byte digests of the block's distinct normalised queries as uint64 pairs)."""
    packed = b"".join(
        hashlib.blake2b(q.encode("utf-8", "surrogateescape"), digest_size=16).digest()
        for q in kept.queries
    )
    return kept.split, np.frombuffer(packed, dtype=">u8").astype(np.uint64).reshape(-1, 2)


def _distinct(digests: list[np.ndarray]) -> np.ndarray:
    rows = np.ascontiguousarray(np.concatenate(digests)) if digests else np.zeros((0, 2), np.uint64)
    whole = rows.view(np.dtype((np.void, 16))).ravel()  # one 16-byte value per row
    return np.unique(whole).view(np.uint64).reshape(-1, 2)


class _DistinctCount(_ArrayLists):
    """Arrays of uint64 pairs -> how many distinct pairs. The accumulator is a list of arrays,
    made distinct when accumulators merge (16 bytes of state per distinct pair)."""

    def merge_accumulators(self, accumulators):
        return [_distinct([d for acc in accumulators for d in acc])]

    def extract_output(self, acc):
        return len(_distinct(acc))


class ReadRows(beam.PTransform):
    """(path, format) of each input file -> its rows in `blocks.RowBlock`s, the files spread
    over workers. `schema` types JSONL for pyarrow's JSON reader (without it, JSONL is read
    row by row)."""

    def __init__(
        self,
        files: Sequence[tuple[str, str]],
        encoding: str,
        schema: S.RawSchema | None = None,
        label=None,
    ):
        super().__init__(label)
        self._files, self._encoding, self._schema = list(files), encoding, schema

    def expand(self, pipeline):
        return (
            pipeline
            | "Files" >> beam.Create(self._files)
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadBlocks(self._encoding, self._schema))
        )


class FindDuplicatePairs(beam.PTransform):
    """RowBlocks -> (pair digest, (file index, row) of its first row), for each (query,
    product_id) pair that comes more than once (the query normalised)."""

    def __init__(self, file_index: dict[str, int], schema: S.RawSchema, label=None):
        super().__init__(label)
        self._file_index, self._schema = file_index, schema

    def expand(self, blocks):
        return (
            blocks
            | "PairTables"
            >> beam.FlatMap(_pair_tables, file_index=self._file_index, schema=self._schema)
            | "FirstPerPair" >> beam.CombinePerKey(_DuplicatedPairs())
            | "Duplicated" >> beam.FlatMap(lambda kv: kv[1])
        )


class ValidateRows(beam.PTransform):
    """RowBlocks -> tagged outputs: "kept" (`columnar.KeptRows`, the usable rows of a block
    for one split), "dead_letter" (dead letters: bad rows and later copies of a duplicated
    pair) and "events" ((event, count) per bundle). `duplicates` is FindDuplicatePairs'
    output."""

    def __init__(self, schema, encoding: str, funnel_policy: str, files, duplicates, label=None):
        super().__init__(label)
        self._validate = _Validate(schema, encoding, funnel_policy, list(files))
        self._duplicates = duplicates

    def expand(self, blocks):
        return blocks | "Validate" >> beam.ParDo(
            self._validate, duplicates=beam.pvalue.AsDict(self._duplicates)
        ).with_outputs(_EVENTS, _DEAD, main="kept")


class WriteSplits(beam.PTransform):
    """KeptRows -> each split's Parquet files under `output_dir`, one per input file (`files`:
    how many were read), each in its input file's row order (`raw_splits.WriteShards`)."""

    def __init__(self, output_dir: str, schema, files: int, label=None):
        super().__init__(label)
        self._output_dir, self._schema, self._files = output_dir, schema, files

    def expand(self, kept):
        parts = kept | "BySplit" >> beam.Partition(_split_index, len(S.SPLITS))
        for name, part in zip(S.SPLITS, parts, strict=True):
            _ = part | f"Write[{name}]" >> beam.ParDo(
                raw_splits.WriteShards(self._output_dir, name, self._files, self._schema)
            )
        return kept.pipeline


class CountEvents(beam.PTransform):
    """The bundles' (event, count) pairs and the distinct queries of each split -> one JSON
    object of totals (counts.json's source)."""

    def expand(self, inputs):
        events, kept = inputs
        split_queries = (
            kept
            | "QueryDigests" >> beam.Map(_query_digests)
            | "DistinctQueries" >> beam.CombinePerKey(_DistinctCount())
            | "SplitQueries" >> beam.MapTuple(lambda s, n: (counts_lib.split_queries_event(s), n))
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
        | "FindDuplicatePairs" >> FindDuplicatePairs(file_index, schema)
    )
    checked = (
        pipeline
        | "ReadRows" >> ReadRows(files, encoding, schema)
        | "ValidateRows"
        >> ValidateRows(schema, encoding, funnel_policy, [f.path for f in inputs], duplicates)
    )
    kept = checked.kept
    _ = kept | "WriteSplits" >> WriteSplits(output_dir, schema, len(inputs))
    _ = (
        kept
        | "BySplitName" >> beam.Map(lambda k: (k.split, k))
        | "SplitStatistics" >> beam.CombinePerKey(statistics.SplitStatistics(schema))
        | "StatisticsTable" >> beam.combiners.ToDict()
        | "StatisticsJson" >> beam.Map(statistics.encode_outputs)
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


def write_stages(output_dir: str) -> dict[str, str]:
    """The label of each Beam transform of `build_pipeline` that writes, and what it writes
    (a disk fault inside one names it, `disk_faults.reported`)."""
    return {
        **{f"WriteSplits/Write[{s}]": layout.split_dir(output_dir, s) for s in S.SPLITS},
        "WriteStatistics": os.path.join(output_dir, _STATISTICS_PART),
        "WriteEvents": os.path.join(output_dir, _EVENTS_FILE),
        "WriteDeadLetter": os.path.join(output_dir, layout.DEAD_LETTER_DIR),
    }


def _output_patterns(output_dir: str) -> list[str]:
    """Every file `run_ingest` writes into `output_dir` (globs for the shards)."""
    return [layout.raw_split_pattern(output_dir, s) for s in S.SPLITS] + [
        dead_letter_pattern(output_dir),
        os.path.join(output_dir, _EVENTS_FILE),
        os.path.join(output_dir, _STATISTICS_PART),
        os.path.join(output_dir, layout.COUNTS_FILE),
        os.path.join(output_dir, layout.SCHEMA_FILE),
        *statistics_files.output_paths(output_dir),
    ]


def clear_outputs(output_dir: str) -> list[str]:
    """Remove what `run_ingest` wrote into `output_dir`, whole or not (shards, dead letters,
    counts, schema, statistics and Beam's temporary folders): after a failed run nothing of it
    is left for a retry or a later step to take for complete. Returns the paths that could
    not be removed (a volume gone read-only)."""
    left = []
    try:
        _delete_temporary(output_dir)
    except OSError:  # Beam's BeamIOError included
        left.append(os.path.join(output_dir, "beam-temp-*"))
    for result in FileSystems.match(_output_patterns(output_dir)):
        for meta in result.metadata_list:
            try:
                FileSystems.delete([meta.path])
            except OSError:
                left.append(meta.path)
    return left


def _delete_matching(patterns: Sequence[str]) -> None:
    paths = [m.path for r in FileSystems.match(list(patterns)) for m in r.metadata_list]
    if paths:
        FileSystems.delete(paths)


def _delete_temporary(output_dir: str) -> None:
    """The beam-temp-* folders that the write sinks of a failed run leave behind: beside the
    counts and statistics, and in each split's and the dead letters' folder."""
    folders = [output_dir] + [
        os.path.join(output_dir, name) for name in (*S.SPLITS, layout.DEAD_LETTER_DIR)
    ]
    patterns = [os.path.join(folder, "beam-temp-*") for folder in folders]
    if "://" not in output_dir:  # a local folder (empty temporary folders too)
        found = {path for pattern in patterns for path in glob.glob(pattern)}
    else:  # an object store: the prefixes of the temporary objects
        found = {
            m.path[: m.path.index("/", m.path.index("beam-temp-"))]
            for result in FileSystems.match([os.path.join(p, "*") for p in patterns])
            for m in result.metadata_list
        }
    if found:
        FileSystems.delete(sorted(found))


def _write_text(path: str, text: str) -> None:
    with disk_faults.writing(path), FileSystems.create(path) as fh:
        fh.write(text.encode("utf-8"))


def _ensure_split_files(output_dir: str, files: int, schema: S.RawSchema) -> None:
    """Give every split at least one (empty) file, so downstream globs always match."""
    for name in S.SPLITS:
        if not FileSystems.match([layout.raw_split_pattern(output_dir, name)])[0].metadata_list:
            path = layout.raw_shard_path(output_dir, name, 0, files)
            with disk_faults.writing(path):
                raw_splits.write_empty_shard(output_dir, name, files, schema)


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
    the job runs locally, on as many processes as the files keep busy
    (`beam_runner.local_workers`: at most one per idle core, one per file and what the
    memory holds; one for a small input). Raises IngestError (a ValueError) before the job for
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
    _delete_matching(_output_patterns(output_dir))
    logger.info("ingesting %d file(s) matching %s into %s", len(inputs), input_pattern, output_dir)
    progress(f"reading, validating and splitting {len(inputs)} file(s) (Beam)")
    try:
        workers = local_workers([f.size for f in inputs], INGEST_WORKER_BYTES)
        with make_pipeline(beam_args, workers) as pipeline:
            build_pipeline(pipeline, inputs, output_dir, schema, encoding, funnel_policy)
    except BaseException as err:  # a broken file, a crash, an interrupt: nothing half-written
        _delete_temporary(output_dir)
        unreadable = _unreadable_file(err)
        if unreadable is None:
            raise
        raise IngestError(unreadable) from None
    with FileSystems.open(events_path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        events = json.loads(fh.read().decode("utf-8"))
    FileSystems.delete([events_path])
    counts = IngestCounts.from_events(events)  # checks read == kept + filtered + dead-lettered
    if counts.rows_read == 0:
        names = ", ".join(f.path for f in inputs)
        raise IngestError(f"no data rows in {names}: the input has a header or schema but no rows")
    _ensure_split_files(output_dir, len(inputs), schema)
    _write_text(os.path.join(output_dir, layout.SCHEMA_FILE), schema.to_json())
    _write_text(os.path.join(output_dir, layout.COUNTS_FILE), counts.to_json())
    logger.info("ingest counts: %s", counts.summary())
    progress(f"read {counts.rows_read} rows: kept {counts.rows_kept}, "
             f"dead-lettered {counts.rows_dead_letter}; computing statistics")  # fmt: skip
    stats = _write_statistics(output_dir, counts, schema)
    for finding in stats["drift"]:
        logger.warning("drift: %s", finding["message"])
    share = counts.rows_dead_letter / counts.rows_read
    if share > max_bad_share:
        raise IngestError(_too_many_bad_rows(counts, share, max_bad_share, output_dir))
    return counts


def _unreadable_file(err: BaseException) -> str | None:
    """The message of the UnreadableFile behind `err`, which a runner may re-raise wrapped in
    its own exception (or only as text, from a worker process); None when it is no such
    error."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, UnreadableFile):
            return str(err.args[0]).split("\n")[0]
        found = _UNREADABLE_TEXT.search(str(err))
        if found:
            return found.group(1)
        err = err.__cause__ or err.__context__
    return None


def _write_statistics(output_dir: str, counts: IngestCounts, schema: S.RawSchema) -> dict:
    part = os.path.join(output_dir, _STATISTICS_PART)
    with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        outputs = statistics.decode_outputs(fh.read().decode("utf-8"))
    FileSystems.delete([part])
    return statistics_files.write_statistics(output_dir, outputs, counts, schema.task_names)


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
