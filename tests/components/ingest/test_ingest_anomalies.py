"""Drift findings as TFDV's Anomalies proto: one per compared split, keyed by feature."""

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components.ingest import anomalies

Info = anomalies_pb2.AnomalyInfo

FINDINGS = [
    {"split": "eval", "column": "price", "kind": "mean_shift", "message": "price: eval mean up"},
    {"split": "test", "column": "rating", "kind": "mean_shift", "message": "rating: test mean"},
    {"split": "test", "column": "rating", "kind": "missing_shift", "message": "rating: missing"},
    {"split": "test", "column": "click", "kind": "label_rate", "message": "click label rate"},
]


def test_findings_of_a_split_become_its_anomalies():
    test = anomalies.split_anomalies("test", FINDINGS, num_examples=120)
    assert set(test.anomaly_info) == {"rating", "click"}  # eval's finding is not test's
    assert test.anomaly_name_format == anomalies_pb2.Anomalies.SERIALIZED_PATH
    assert not test.data_missing
    rating = test.anomaly_info["rating"]
    assert list(rating.path.step) == ["rating"] and rating.severity == Info.WARNING
    assert [(Info.Type.Name(r.type), r.description) for r in rating.reason] == [
        ("CUSTOM_VALIDATION", "rating: test mean"),
        ("CUSTOM_VALIDATION", "rating: missing"),
    ]
    assert rating.short_description == "Multiple errors"
    assert rating.description == "rating: test mean; rating: missing"
    click = test.anomaly_info["click"]
    assert Info.Type.Name(click.reason[0].type) == "COMPARATOR_L_INFTY_HIGH"
    assert (click.short_description, click.description) == (
        "Label rate moved from train",
        "click label rate",
    )
    # The text format (tfdv.write_anomalies_text) reads back to the same proto.
    again = text_format.Parse(text_format.MessageToString(test), anomalies_pb2.Anomalies())
    assert again == test
    # Reasons come in the statistics' feature order (a proto map has none).
    order = [(name, r.description) for name, r in anomalies.reasons(test, ["click", "rating"])]
    assert order == [
        ("click", "click label rate"),
        ("rating", "rating: test mean"),
        ("rating", "rating: missing"),
    ]


def test_an_empty_split_is_data_missing_and_unknown_kinds_are_refused():
    empty = anomalies.split_anomalies("eval", [], num_examples=0)
    assert empty.data_missing and not empty.anomaly_info
    odd = [{"split": "eval", "column": "price", "kind": "skew", "message": "?"}]
    with pytest.raises(ValueError, match="unknown drift finding kind 'skew'"):
        anomalies.split_anomalies("eval", odd, num_examples=10)
