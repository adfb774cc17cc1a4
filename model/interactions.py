import keras
from keras import ops

INTERACTIONS = ("cosine", "hadamard", "concat")


@keras.saving.register_keras_serializable(package="mlpr")
class Interactions(keras.layers.Layer):
    """Query-product interactions of the projected text embeddings phi(q) and psi(i).

    `cosine` gives one similarity per pair, `hadamard` the element-wise product, `concat`
    both embeddings side by side; the enabled ones are concatenated in that order.

    Args:
        kinds: which interactions to compute, a subset of `("cosine", "hadamard", "concat")`.

    Examples:
        >>> layer = Interactions(kinds=("cosine", "hadamard"))
        >>> layer([keras.ops.ones((2, 4)), keras.ops.ones((2, 4))]).shape
        (2, 5)
    """

    def __init__(self, kinds=INTERACTIONS, **kwargs):
        super().__init__(**kwargs)
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in INTERACTIONS]
        if not kinds or unknown or len(set(kinds)) != len(kinds):
            raise ValueError(f"`kinds` must be distinct values from {INTERACTIONS}, got {kinds}")
        self.kinds = tuple(k for k in INTERACTIONS if k in kinds)

    def call(self, inputs):
        query, product = inputs
        parts = []
        if "cosine" in self.kinds:
            q = query / ops.maximum(ops.norm(query, axis=-1, keepdims=True), 1e-12)
            p = product / ops.maximum(ops.norm(product, axis=-1, keepdims=True), 1e-12)
            parts.append(ops.sum(q * p, axis=-1, keepdims=True))
        if "hadamard" in self.kinds:
            parts.append(query * product)
        if "concat" in self.kinds:
            parts.extend([query, product])
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        dim = input_shape[0][-1]
        width = {"cosine": 1, "hadamard": dim, "concat": 2 * dim}
        return (*input_shape[0][:-1], sum(width[k] for k in self.kinds))

    def get_config(self):
        config = super().get_config()
        config.update({"kinds": list(self.kinds)})
        return config
