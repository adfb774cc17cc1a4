import json
import math

import keras
import numpy as np
from keras import ops


def trees_from_booster(booster) -> dict:
    """Arrays describing a binary:logistic XGBoost booster, padded to equal tree sizes.

    Returns a dict with `feature`, `threshold`, `left`, `right`, `default_left`, `value`
    ([num_trees, max_nodes] each), `base_margin` and `depth`.
    """
    model = json.loads(booster.save_raw("json").decode())
    learner = model["learner"]
    objective = learner["objective"]["name"]
    if objective != "binary:logistic":
        raise ValueError(f"only binary:logistic boosters are supported, got {objective!r}")
    trees = learner["gradient_booster"]["model"]["trees"]
    if not trees:
        raise ValueError("the booster has no trees")
    width = max(int(t["tree_param"]["num_nodes"]) for t in trees)
    arrays = {
        "feature": np.zeros((len(trees), width), "int32"),
        "threshold": np.zeros((len(trees), width), "float32"),
        "left": np.zeros((len(trees), width), "int32"),
        "right": np.zeros((len(trees), width), "int32"),
        "default_left": np.zeros((len(trees), width), "float32"),
        "value": np.zeros((len(trees), width), "float32"),
    }
    depth = 0
    for i, tree in enumerate(trees):
        if any(tree["split_type"]):
            raise ValueError("categorical splits are not supported; train on numeric features")
        n = int(tree["tree_param"]["num_nodes"])
        left = np.asarray(tree["left_children"], "int32")
        leaf = left == -1
        nodes = np.arange(n, dtype="int32")
        # A leaf points to itself, so extra traversal steps stay on it.
        arrays["left"][i, :n] = np.where(leaf, nodes, left)
        arrays["right"][i, :n] = np.where(leaf, nodes, tree["right_children"])
        arrays["feature"][i, :n] = np.where(leaf, 0, tree["split_indices"])
        arrays["threshold"][i, :n] = np.where(leaf, 0.0, tree["split_conditions"])
        arrays["default_left"][i, :n] = tree["default_left"]
        arrays["value"][i, :n] = np.where(leaf, tree["split_conditions"], 0.0)
        depth = max(depth, _depth(tree["left_children"], tree["right_children"]))
    base_score = float(learner["learner_model_param"]["base_score"].strip("[]"))
    base_margin = math.log(base_score / (1.0 - base_score))
    return {**arrays, "base_margin": base_margin, "depth": depth}


def _depth(left: list, right: list) -> int:
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, d = stack.pop()
        if left[node] == -1:
            deepest = max(deepest, d)
        else:
            stack += [(left[node], d + 1), (right[node], d + 1)]
    return deepest


@keras.saving.register_keras_serializable(package="mlpr")
class BoostedTrees(keras.layers.Layer):
    """Evaluates an XGBoost binary classifier with tensor ops: P(y = 1 | x).

    Every tree is traversed for the whole batch at once, `depth` steps of gathers; a missing
    value (NaN) follows each node's default direction, as in XGBoost. The trees are
    non-trainable weights, so they are saved with the model and exported with it (TensorFlow
    core ops only, servable by stock TF Serving).

    Args:
        num_trees: number of trees.
        num_nodes: nodes per tree (padded).
        depth: traversal steps (the deepest leaf's depth).
        base_margin: the booster's starting log-odds.

    Examples:
        >>> layer = BoostedTrees(num_trees=1, num_nodes=3, depth=1, base_margin=0.0)
        >>> layer.set_tree_arrays({"feature": [[0, 0, 0]], "threshold": [[0.5, 0, 0]],
        ...     "left": [[1, 1, 2]], "right": [[2, 1, 2]], "default_left": [[1, 0, 0]],
        ...     "value": [[0, -1.0, 1.0]]})
        >>> [round(float(p), 3) for p in layer(keras.ops.convert_to_tensor([[0.0], [1.0]]))]
        [0.269, 0.731]
    """

    ARRAYS = ("feature", "threshold", "left", "right", "default_left", "value")

    def __init__(self, num_trees, num_nodes, depth, base_margin=0.0, **kwargs):
        super().__init__(**kwargs)
        if min(num_trees, num_nodes) < 1 or depth < 0:
            raise ValueError(
                f"need num_trees, num_nodes >= 1 and depth >= 0, got {num_trees}, {num_nodes}, {depth}"
            )
        self.num_trees = int(num_trees)
        self.num_nodes = int(num_nodes)
        self.depth = int(depth)
        self.base_margin = float(base_margin)
        shape = (self.num_trees, self.num_nodes)
        for name in self.ARRAYS:
            dtype = "int32" if name in ("feature", "left", "right") else "float32"
            setattr(
                self,
                name,
                self.add_weight(
                    shape=shape, dtype=dtype, initializer="zeros", trainable=False, name=name
                ),
            )

    @classmethod
    def from_booster(cls, booster, **kwargs) -> "BoostedTrees":
        arrays = trees_from_booster(booster)
        layer = cls(
            num_trees=arrays["feature"].shape[0],
            num_nodes=arrays["feature"].shape[1],
            depth=arrays["depth"],
            base_margin=arrays["base_margin"],
            **kwargs,
        )
        layer.set_tree_arrays(arrays)
        return layer

    def set_tree_arrays(self, arrays: dict) -> None:
        for name in self.ARRAYS:
            variable = getattr(self, name)
            variable.assign(np.asarray(arrays[name], dtype=variable.dtype))

    def call(self, inputs):
        x = ops.cast(inputs, "float32")  # [B, F]
        batch = ops.shape(x)[0]
        tree_index = ops.arange(self.num_trees, dtype="int32")
        node = ops.zeros((batch, self.num_trees), dtype="int32")

        def lookup(table, nodes):  # table [T, N], nodes [B, T] -> [B, T]
            flat = ops.reshape(table, (-1,))
            return ops.take(flat, tree_index[None, :] * self.num_nodes + nodes)

        for _ in range(self.depth):
            features = lookup(self.feature, node)
            values = ops.take_along_axis(x, features, axis=1)
            missing = ops.isnan(values)
            go_left = ops.where(
                missing,
                lookup(self.default_left, node) > 0.5,
                values < lookup(self.threshold, node),
            )
            node = ops.where(go_left, lookup(self.left, node), lookup(self.right, node))
        margin = self.base_margin + ops.sum(lookup(self.value, node), axis=1)
        return ops.sigmoid(margin)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_trees": self.num_trees,
                "num_nodes": self.num_nodes,
                "depth": self.depth,
                "base_margin": self.base_margin,
            }
        )
        return config
