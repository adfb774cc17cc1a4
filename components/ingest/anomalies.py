"""The drift findings of a split as TensorFlow Data Validation's Anomalies proto.

One Anomalies per split compared with train (eval and test), as TFDV's `validate_statistics`
gives for statistics checked against a baseline: `anomaly_info` keyed by the feature's name
(its serialized path), one AnomalyInfo per feature with a Reason per finding, all of severity
WARNING (ingest flags drift, it does not stop on it), and `data_missing` when the split has no
rows. A feature with one reason takes its descriptions; one with several is "Multiple
errors", its description the reasons' joined, as TFDV writes them.

The reason types (`AnomalyInfo.Type`) say what was compared:

- `label_rate` -> COMPARATOR_L_INFTY_HIGH. A task's label is a 0/1 feature; the L-infinity
  distance between its distributions in the split and in train is the difference of the label
  rates, and the finding is that distance beyond the threshold the ratio and chance rules set
  (`statistics.drift_findings`).
- `mean_shift`, `missing_shift` -> CUSTOM_VALIDATION. Each is a condition over the statistics
  of the same feature in the split and in train (the mean against train's mean and standard
  deviation; the missing share against train's), what TFDV calls a feature-pair custom
  validation. TFDV's comparator types stand for other measures (JENSEN_SHANNON_DIVERGENCE_HIGH:
  a divergence between the two histograms), which ingest does not compute.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from tensorflow_metadata.proto.v0 import anomalies_pb2

_Type = anomalies_pb2.AnomalyInfo.Type
REASON_TYPES = {
    "mean_shift": _Type.CUSTOM_VALIDATION,
    "missing_shift": _Type.CUSTOM_VALIDATION,
    "label_rate": _Type.COMPARATOR_L_INFTY_HIGH,
}
SHORT_DESCRIPTIONS = {
    "mean_shift": "Mean moved from train",
    "missing_shift": "Missing share moved from train",
    "label_rate": "Label rate moved from train",
}
MULTIPLE = "Multiple errors"


def split_anomalies(
    split: str, findings: Sequence[Mapping], num_examples: int
) -> anomalies_pb2.Anomalies:
    """The Anomalies of `split` from the drift findings (`statistics.drift_findings`; those of
    other splits are skipped) and the split's number of rows."""
    anomalies = anomalies_pb2.Anomalies(
        anomaly_name_format=anomalies_pb2.Anomalies.SERIALIZED_PATH,
        data_missing=num_examples == 0,
    )
    for finding in findings:
        if finding["split"] != split:
            continue
        kind, column = finding["kind"], finding["column"]
        if kind not in REASON_TYPES:
            raise ValueError(f"unknown drift finding kind {kind!r} ({column} in {split})")
        info = anomalies.anomaly_info[column]
        if not info.path.step:
            info.path.step.append(column)
            info.severity = anomalies_pb2.AnomalyInfo.WARNING
        info.reason.add(
            type=REASON_TYPES[kind],
            short_description=SHORT_DESCRIPTIONS[kind],
            description=finding["message"],
        )
    for info in anomalies.anomaly_info.values():
        if len(info.reason) == 1:
            info.short_description = info.reason[0].short_description
            info.description = info.reason[0].description
        else:
            info.short_description = MULTIPLE
            info.description = "; ".join(r.description for r in info.reason)
    return anomalies


def reasons(
    anomalies: anomalies_pb2.Anomalies, order: Sequence[str] = ()
) -> Iterator[tuple[str, anomalies_pb2.AnomalyInfo.Reason]]:
    """(feature, reason) of every reason, features in `order` first (the statistics' order;
    a proto map has none), then the others by name."""
    known = [name for name in dict.fromkeys(order) if name in anomalies.anomaly_info]
    rest = sorted(set(anomalies.anomaly_info) - set(known))
    for name in (*known, *rest):
        for reason in anomalies.anomaly_info[name].reason:
            yield name, reason
