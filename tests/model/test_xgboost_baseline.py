import numpy as np
import pytest

from contract import schema as S
from model.xgboost_baseline import XGBoostConfig, fit_xgboost


def _rates(x):
    return 1.0 / (1.0 + np.exp(-(2.0 * x[:, 0] - 1.0)))


def test_soft_labels_give_the_rate_not_the_class():
    """Trained on counts per impression (soft labels), each booster estimates the rate itself:
    a classifier of "rate > 0" would put every row near 1."""
    rng = np.random.default_rng(0)
    train, held_out = rng.normal(size=(3000, 3)), rng.normal(size=(500, 3))
    labels = {
        t: _rates(train) * scale for t, scale in zip(S.DEFAULT_TASKS, (1.0, 0.5, 0.2), strict=True)
    }
    eval_labels = {
        t: _rates(held_out) * s for t, s in zip(S.DEFAULT_TASKS, (1.0, 0.5, 0.2), strict=True)
    }
    model, rounds = fit_xgboost(
        train.astype("float32"),
        labels,
        held_out.astype("float32"),
        eval_labels,
        XGBoostConfig(n_estimators=200, max_depth=3),
    )
    predicted = model.predict({S.WIDE: held_out.astype("float32")}, verbose=0)
    for task in S.DEFAULT_TASKS:
        error = np.abs(predicted[task][:, 0] - eval_labels[task])
        assert error.mean() < 0.02, (task, error.mean())
        assert rounds[task] > 10


def test_a_constant_label_is_refused():
    x = np.zeros((10, 2), "float32")
    labels = {t: np.zeros(10) for t in S.DEFAULT_TASKS}
    with pytest.raises(ValueError, match="single label value for task 'click'"):
        fit_xgboost(x, labels, x, labels)
