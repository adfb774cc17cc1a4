import pytest

from components.train.inputs import label_columns
from contract import schema as S

RATES = tuple(S.rate_name(t) for t in S.DEFAULT_TASKS)


def test_rate_targets_read_the_rate_columns_and_any_the_binary_labels():
    available = {*S.DEFAULT_TASKS, *RATES, S.POSITION, S.WIDE}
    assert label_columns(available, S.DEFAULT_TASKS, "rate") == {
        "click": "click_rate",
        "atc": "atc_rate",
        "purchase": "purchase_rate",
        S.POSITION: S.POSITION,
    }
    assert label_columns(available - {S.POSITION}, S.DEFAULT_TASKS, "any") == {
        t: t for t in S.DEFAULT_TASKS
    }


def test_data_transformed_without_rates_is_a_clear_error():
    with pytest.raises(ValueError, match=r"lacks \['click_rate', 'atc_rate', 'purchase_rate'\]"):
        label_columns(set(S.DEFAULT_TASKS), S.DEFAULT_TASKS, "rate")
    with pytest.raises(ValueError, match="targets must be one of"):
        label_columns(set(S.DEFAULT_TASKS), S.DEFAULT_TASKS, "clicks")
