"""The paper's reference point: XGBoost, one logistic model per task on the wide features.

Trained with the xgboost library, then turned into a Keras model of `BoostedTrees` layers
with the same inputs and outputs as the neural rankers, so it shares the export, the
serving signatures and the evaluation.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from contract import schema as S
from model.boosted_trees import BoostedTrees


@dataclasses.dataclass(frozen=True)
class XGBoostConfig:
    n_estimators: int = 500
    max_depth: int = 6
    learning_rate: float = 0.1
    early_stopping_rounds: int = 20
    subsample: float = 0.9
    colsample_bytree: float = 0.9


def fit_xgboost(
    train_wide: np.ndarray,
    train_labels: dict[str, np.ndarray],
    eval_wide: np.ndarray,
    eval_labels: dict[str, np.ndarray],
    config: XGBoostConfig = XGBoostConfig(),
    seed: int = 0,
) -> tuple[keras.Model, dict[str, int]]:
    """One logistic booster per task (the keys of `train_labels`), early-stopped on the eval split's log loss. Labels are
    0/1 or soft (a rate in [0, 1]), as the neural rankers train on.

    Returns the Keras model (input `wide`, one probability output per task) and the number of
    boosting rounds kept per task.
    """
    import xgboost as xgb

    outputs, rounds = {}, {}
    wide = keras.Input((train_wide.shape[1],), dtype="float32", name=S.WIDE)
    for task in train_labels:
        if len(np.unique(train_labels[task])) < 2:
            raise ValueError(f"the train split has a single label value for task {task!r}")
        # A regressor with the logistic objective: it takes soft labels, which the sklearn
        # classifier (built for class ids) refuses.
        classifier = xgb.XGBRegressor(
            objective="binary:logistic",
            n_estimators=config.n_estimators,
            max_depth=config.max_depth,
            learning_rate=config.learning_rate,
            subsample=config.subsample,
            colsample_bytree=config.colsample_bytree,
            early_stopping_rounds=config.early_stopping_rounds,
            eval_metric="logloss",
            random_state=seed,
            n_jobs=0,
        )
        classifier.fit(
            train_wide, train_labels[task], eval_set=[(eval_wide, eval_labels[task])], verbose=False
        )
        booster = classifier.get_booster()
        best = getattr(classifier, "best_iteration", None)
        if best is not None:
            booster = booster[: best + 1]
        rounds[task] = int(booster.num_boosted_rounds())
        probability = BoostedTrees.from_booster(booster, name=f"{task}_trees")(wide)
        outputs[task] = keras.layers.Reshape((1,), name=task)(probability)
    return keras.Model(inputs={S.WIDE: wide}, outputs=outputs, name="xgboost_baseline"), rounds
