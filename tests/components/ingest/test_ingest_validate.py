"""Row validation on single records: parsing rules, reasons and messages."""

from __future__ import annotations

import json
import math

import pytest
from ingest_testlib import good_row

from components.ingest import errors
from components.ingest.readers import RawRecord
from components.ingest.validate import DEAD_LETTER, FILTERED, KEPT, check_record
from contract import schema as S


def check(values, policy="reject", raw_schema=S.DEMO_SCHEMA, encoding="utf-8"):
    return check_record(RawRecord("/data/log.csv", 3, values, values), raw_schema, encoding, policy)


def reason_of(values, **kwargs):
    checked = check(values, **kwargs)
    assert checked.outcome == DEAD_LETTER
    return checked.dead_letter["reason"], checked.dead_letter["field"]


def test_good_row_is_typed():
    checked = check(good_row(title="  padded title  "))
    assert checked.outcome == KEPT
    assert checked.row[S.TITLE] == "padded title"
    assert checked.row[S.CLICKS] == 10 and isinstance(checked.row[S.CLICKS], int)
    assert checked.row["price"] == 89.5
    assert "campaign" not in checked.row


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"clicks": "abc"}, ("not_an_integer", "clicks")),
        ({"clicks": "2.5"}, ("not_an_integer", "clicks")),
        ({"clicks": "1_000"}, ("not_an_integer", "clicks")),
        ({"purchases": "-1"}, ("negative_count", "purchases")),
        ({"impressions": "9999999999999999999999"}, ("out_of_range", "impressions")),
        ({"impressions": 1e20}, ("out_of_range", "impressions")),  # as JSONL reads it
        ({"impressions": ""}, ("missing_value", "impressions")),
        ({"product_id": "   "}, ("missing_value", "product_id")),
        ({"price": "nan"}, ("missing_value", "price")),  # NaN means missing, in every format
        ({"price": math.nan}, ("missing_value", "price")),
        ({"price": "inf"}, ("not_a_number", "price")),
        ({"price": 10**400}, ("not_a_number", "price")),  # a JSON integer beyond a float
        ({"position": "1" + "0" * 400}, ("not_a_number", "position")),
        ({"impressions": "9" * 5000}, ("out_of_range", "impressions")),  # past int()'s limit
        ({"clicks": "-" + "9" * 5000}, ("negative_count", "clicks")),
        ({"discount": "1.5"}, ("out_of_range", "discount")),
        ({"price": "-2"}, ("out_of_range", "price")),
        ({"position": "x"}, ("not_a_number", "position")),
        ({"position": "-1"}, ("out_of_range", "position")),
        ({"clicks": "101"}, ("funnel_violation", "clicks")),
        ({"add_to_cart": "11"}, ("funnel_violation", "add_to_cart")),
        ({"brand": "Caf\udce9"}, ("invalid_encoding", "brand")),
    ],
)
def test_reasons(overrides, expected):
    assert reason_of(good_row(**overrides)) == expected


def test_first_problem_in_contract_order_wins():
    # title comes before clicks in the contract, so its problem is the one reported.
    assert reason_of(good_row(title="", clicks="x")) == ("missing_value", "title")


def test_message_names_row_file_and_field():
    dead = check(good_row(price="12 EUR")).dead_letter
    assert dead["message"] == "row 3 of log.csv: field 'price' is not a number: '12 EUR'"
    assert dead["source"] == "/data/log.csv"
    assert dead["row"] == 3


def test_typed_values_from_json_and_parquet():
    values = good_row(product_id=12345, clicks=10.0, impressions=100, price=89, position=math.nan)
    checked = check(values)
    assert checked.outcome == KEPT
    assert checked.row[S.PRODUCT_ID] == "12345"
    assert checked.row[S.CLICKS] == 10
    assert checked.row[S.POSITION] == 0.0  # NaN from a typed column means missing
    assert reason_of(good_row(price=True)) == ("not_a_number", "price")
    assert reason_of(good_row(title=["a", "b"])) == ("malformed_row", "title")
    assert reason_of(good_row(clicks=None)) == ("missing_value", "clicks")


def test_low_impressions_are_filtered_not_errors():
    assert (
        check(good_row(impressions="5", clicks="1", add_to_cart="0", purchases="0")).outcome
        == FILTERED
    )
    assert (
        check(good_row(impressions="6", clicks="1", add_to_cart="0", purchases="0")).outcome == KEPT
    )
    # An invalid row is dead-lettered even when it would have been filtered.
    assert reason_of(good_row(impressions="2", clicks="x")) == ("not_an_integer", "clicks")


def test_clip_policy_repairs_the_funnel_top_down():
    checked = check(
        good_row(impressions="20", clicks="30", add_to_cart="25", purchases="40"),
        policy=errors.CLIP,
    )
    assert checked.outcome == KEPT and checked.clipped
    counts = [checked.row[c] for c in S.DEMO_SCHEMA.funnel]
    assert counts == [20, 20, 20, 20]
    assert not check(good_row(), policy=errors.CLIP).clipped


def test_malformed_record():
    record = RawRecord("/data/log.jsonl", 9, None, "[1]", "is a JSON list, not an object")
    dead = check_record(record, S.DEMO_SCHEMA, "utf-8", "reject").dead_letter
    assert dead == {
        "source": "/data/log.jsonl",
        "row": 9,
        "reason": "malformed_row",
        "field": None,
        "message": "row 9 of log.jsonl: is a JSON list, not an object",
        "raw": "[1]",
    }


def test_a_long_bad_value_is_cut_between_characters_not_inside_an_escape():
    for prefix in range(40, 60):  # every offset of the escapes against the cut
        value = "x" * prefix + "\udce9" * 30
        detail = check({**good_row(), "brand": value}).dead_letter["message"]
        shown = detail[detail.index("text: ") + len("text: ") : detail.index("; the file")]
        assert len(shown) <= 60 and shown.endswith("...")
        body = shown[1:-4]  # between the opening quote and the closing quote + "..."
        escapes = body[prefix:]
        assert escapes == "\\xe9" * (len(escapes) // 4), (prefix, shown)


def test_undecodable_bytes_are_shown_once_and_a_backslash_as_repr_shows_it():
    value = "ni\udcf1o C:\\tmp"  # an undecodable byte 0xf1, then a real backslash
    message = check({**good_row(), "brand": value}).dead_letter["message"]
    shown = message[message.index("text: ") + len("text: ") : message.index("; the file")]
    assert shown == "'ni\\xf1o C:\\\\tmp'"
    assert len(shown) == len("'ni") + 4 + len("o C:") + 2 + len("tmp'")


def test_a_lone_surrogate_of_a_json_escape_is_shown_as_its_escape():
    """json.loads keeps "\\ud800" (half a pair) as a lone surrogate: the row is an
    invalid_encoding dead letter whose message and raw show it as \\ud800, beside an
    undecodable byte shown as \\xNN; the dead letter can be written as UTF-8."""
    values = {**good_row(), "brand": "caf\udce9 \ud800", "\udfff": 1}
    letter = check(values).dead_letter
    assert (letter["reason"], letter["field"]) == ("invalid_encoding", "brand")
    assert "text: 'caf\\xe9 \\ud800'; the file" in letter["message"]
    assert letter["raw"]["brand"] == "caf\\xe9 \\ud800" and letter["raw"]["\\udfff"] == 1
    json.dumps(letter, ensure_ascii=False).encode("utf-8")  # no surrogate left


def test_nan_and_decimals_read_alike_in_every_format():
    """The text "NaN" (CSV) and a float NaN (Parquet, JSON) are both a missing value: imputed
    for an optional feature, missing_value for a required one. A Parquet decimal is a number."""
    import decimal

    optional = S.RawSchema(
        ranking_features=(
            S.RankingFeature("price", log1p=True, min_value=0.0),
            S.RankingFeature("rating", required=False),
        )
    )
    for nan in ("NaN", " nan ", math.nan):
        checked = check({**good_row(), "rating": nan}, raw_schema=optional)
        assert checked.outcome == KEPT and "rating" not in checked.row
    checked = check(
        {**good_row(), "price": decimal.Decimal("89.50"), "clicks": decimal.Decimal("10")},
        raw_schema=optional,
    )
    assert checked.outcome == KEPT
    assert (checked.row["price"], checked.row[S.CLICKS]) == (89.5, 10)
    assert reason_of({**good_row(), "price": decimal.Decimal("NaN")}) == ("not_a_number", "price")
