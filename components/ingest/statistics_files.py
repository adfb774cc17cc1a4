"""The statistics files of an ingest output, written once the job has run (names in
`statistics`):

    statistics.json                      per-split statistics and drift findings
    statistics/Split-<split>/FeatureStats.pb
                                         the split's statistics as TFDV's
                                         DatasetFeatureStatisticsList: one dataset, named by
                                         the split (a plain serialized proto, what
                                         `tfdv.load_stats_binary` reads and TFX's StatisticsGen
                                         writes under the same name)
    statistics/Split-<eval|test>/SchemaDiff.pb
                                         the split's drift against train as TFDV's Anomalies
                                         (serialized, as TFX's ExampleValidator writes it)
    statistics/Split-<eval|test>/anomalies.pbtxt
                                         the same in text format (`tfdv.write_anomalies_text`)
    statistics.md, statistics.html       readable views of the protos (`statistics_views`)
    facets_overview.html                 Facets Overview of the three splits

The protos are `tensorflow_metadata`'s, so they are read without TFDV:
`DatasetFeatureStatisticsList.FromString(data)`, `text_format.Parse(text, Anomalies())`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

from apache_beam.io.filesystems import FileSystems
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import statistics_pb2

from components import disk_faults
from components.ingest import anomalies as anomalies_lib
from components.ingest import feature_stats, statistics_views
from components.ingest import statistics as stats_lib
from contract import schema as S

COMPARED = tuple(s for s in S.SPLITS if s != "train")  # the splits checked against train


def _write(path: str, data: bytes | str) -> None:
    with disk_faults.writing(path), FileSystems.create(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def split_datasets(
    outputs: Mapping[str, stats_lib.SplitOutput], counts
) -> list[statistics_pb2.DatasetFeatureStatistics]:
    """The TFDV statistics of every split (an empty one included), named by split, the
    split's distinct queries (`counts`) on the query feature."""
    datasets = []
    for split in S.SPLITS:
        dataset = statistics_pb2.DatasetFeatureStatistics(name=split)
        if split in outputs:
            dataset.MergeFrom(outputs[split].features)
        for feature in dataset.features:
            if list(feature.path.step) == [S.QUERY]:
                feature.custom_stats.add(
                    name=feature_stats.QUERIES_STAT, num=counts.splits[split].queries
                )
        datasets.append(dataset)
    return datasets


def write_statistics(
    output_dir: str,
    outputs: Mapping[str, stats_lib.SplitOutput],
    counts,
    labels: Sequence[str],
) -> dict:
    """Write every statistics file of `output_dir` from the combiner's outputs by split and
    the run's IngestCounts; returns statistics.json's content. `labels`: the task names."""
    stats = stats_lib.assemble({s: o.summary for s, o in outputs.items()}, counts)
    _write(os.path.join(output_dir, stats_lib.STATISTICS_FILE), json.dumps(stats, indent=2))
    datasets = split_datasets(outputs, counts)
    for dataset in datasets:
        listed = statistics_pb2.DatasetFeatureStatisticsList(datasets=[dataset])
        path = os.path.join(
            stats_lib.tfdv_split_dir(output_dir, dataset.name), stats_lib.FEATURE_STATS_FILE
        )
        _write(path, listed.SerializeToString())
    rows = {d.name: d.num_examples for d in datasets}
    found = {}
    for split in COMPARED:
        found[split] = anomalies_lib.split_anomalies(split, stats["drift"], rows[split])
        folder = stats_lib.tfdv_split_dir(output_dir, split)
        _write(os.path.join(folder, stats_lib.ANOMALIES_FILE), found[split].SerializeToString())
        _write(
            os.path.join(folder, stats_lib.ANOMALIES_TEXT_FILE),
            text_format.MessageToString(found[split]),
        )
    views = {
        stats_lib.REPORT_FILE: statistics_views.markdown(datasets, found, stats["input"], labels),
        stats_lib.HTML_FILE: statistics_views.html(datasets, found, stats["input"], labels),
        stats_lib.FACETS_FILE: statistics_views.facets_html(datasets),
    }
    for name, text in views.items():
        _write(os.path.join(output_dir, name), text)
    return stats


def output_paths(output_dir: str) -> list[str]:
    """Every file `write_statistics` writes (an earlier run's are deleted first)."""
    names = (
        stats_lib.STATISTICS_FILE,
        stats_lib.REPORT_FILE,
        stats_lib.HTML_FILE,
        stats_lib.FACETS_FILE,
    )
    paths = [os.path.join(output_dir, n) for n in names]
    for split in S.SPLITS:
        folder = stats_lib.tfdv_split_dir(output_dir, split)
        paths.append(os.path.join(folder, stats_lib.FEATURE_STATS_FILE))
        if split in COMPARED:
            paths.append(os.path.join(folder, stats_lib.ANOMALIES_FILE))
            paths.append(os.path.join(folder, stats_lib.ANOMALIES_TEXT_FILE))
    return paths
