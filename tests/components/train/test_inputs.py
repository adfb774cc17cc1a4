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


def test_list_order_keeps_each_querys_examples_together_in_a_random_query_order():
    import numpy as np

    from components.train.inputs import list_order, shuffled_lists

    query = np.array([3, 1, 3, 0, 1, 3, 7, 0, 1, 1])
    order = list_order(query, seed=4)
    assert sorted(order.tolist()) == list(range(10))
    grouped = query[order]
    # Each query's rows form one run, in their original order.
    runs = [q for i, q in enumerate(grouped) if i == 0 or grouped[i - 1] != q]
    assert sorted(runs) == [0, 1, 3, 7]
    for q in (0, 1, 3, 7):
        assert order[grouped == q].tolist() == np.flatnonzero(query == q).tolist()
    assert list_order(query, seed=4).tolist() == order.tolist()
    orders = {tuple(query[list_order(query, seed=s)].tolist()) for s in range(20)}
    assert len(orders) > 5  # the query order is drawn from the seed
    # Passes of batches: every example once a pass, each pass its own order.
    columns = {"row": np.arange(10), "query": query}
    passes = [
        np.concatenate(
            [b["row"].numpy() for b in list(shuffled_lists(columns, query, 4, 1, 2))[i:j]]
        )
        for i, j in ((0, 3), (3, 6))
    ]
    assert all(sorted(p.tolist()) == list(range(10)) for p in passes)
    assert passes[0].tolist() == list_order(query, 1_000).tolist()
    assert passes[1].tolist() == list_order(query, 1_001).tolist()
