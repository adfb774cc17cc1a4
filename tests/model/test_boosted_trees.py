import keras
import numpy as np
import pytest
import xgboost as xgb

from model.boosted_trees import BoostedTrees, trees_from_booster


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype("float32")
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take the default branch
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * x[:, 2] ** 2 > 0).astype(int)
    model = xgb.XGBClassifier(n_estimators=25, max_depth=4, learning_rate=0.3).fit(x, y)
    return model, x


def test_matches_xgboost_predictions(fitted):
    model, x = fitted
    layer = BoostedTrees.from_booster(model.get_booster())
    ours = np.asarray(layer(x))
    theirs = model.predict_proba(x)[:, 1]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert layer.depth == 4 and layer.num_trees == 25


def test_by_hand_single_stump():
    layer = BoostedTrees(num_trees=1, num_nodes=3, depth=1, base_margin=0.5)
    layer.set_tree_arrays(
        {
            "feature": [[1, 0, 0]],
            "threshold": [[2.0, 0, 0]],
            "left": [[1, 1, 2]],
            "right": [[2, 1, 2]],
            "default_left": [[0, 0, 0]],
            "value": [[0.0, -0.5, 1.5]],
        }
    )
    x = np.array([[9.0, 1.0], [9.0, 3.0], [9.0, np.nan]], "float32")
    sigmoid = lambda m: 1 / (1 + np.exp(-m))  # noqa: E731
    # 1 < 2 -> left (-0.5); 3 >= 2 -> right (1.5); NaN -> default right (1.5)
    np.testing.assert_allclose(np.asarray(layer(x)), sigmoid(np.array([0.0, 2.0, 2.0])), rtol=1e-6)


def test_saved_with_the_model(fitted, tmp_path):
    model, x = fitted
    inputs = keras.Input((4,))
    net = keras.Model(inputs, BoostedTrees.from_booster(model.get_booster())(inputs))
    path = str(tmp_path / "trees.keras")
    net.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), net.predict(x, verbose=0), rtol=1e-6)


def test_rejects_other_objectives():
    x = np.random.default_rng(1).normal(size=(50, 2))
    reg = xgb.XGBRegressor(n_estimators=2).fit(x, x[:, 0])
    with pytest.raises(ValueError, match="binary:logistic"):
        trees_from_booster(reg.get_booster())
