import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mlpr")
class PositionBias(keras.layers.Layer):
    """The probability that a shopper examines a product shown at a position, learned from
    the log during training and left out when serving (position-bias-aware learning, PAL,
    Guo et al., RecSys 2019).

    A logged click needs two things: the product was examined (mostly a matter of where it
    was shown) and it was relevant. Training on P(click) = P(examined | position) x
    P(click | examined) lets the ranker's own output learn the second factor only, so that it
    does not learn the old ranking's position effect (and whatever feature that ranking
    sorted by) as if it were relevance. At serving there is no position: the ranker scores
    P(click | examined).

    One learned value per position bucket: positions are rounded to whole numbers and
    clipped to `buckets` (the last bucket holds everything shown that deep or deeper);
    position 0 means unknown and gets an examination probability of 1, so rows without a
    position train as before. The examination probability exp(-softplus(e_b)) is in (0, 1)
    and starts at exp(-softplus(0)) = 0.5 for every bucket.

    Inputs: the logged (mean) display position, [batch, 1] or [batch], 1 = top.
    Output: the examination probability, [batch, 1].

    Args:
        buckets: number of position buckets (>= 1).

    Examples:
        >>> bias = PositionBias(buckets=3)
        >>> [round(float(p), 2) for p in bias(keras.ops.convert_to_tensor([[0.0], [1.0], [9.0]]))[:, 0]]
        [1.0, 0.5, 0.5]
    """

    def __init__(self, buckets=20, **kwargs):
        super().__init__(**kwargs)
        if int(buckets) < 1:
            raise ValueError(f"`buckets` must be >= 1, got {buckets}")
        self.buckets = int(buckets)

    def build(self, input_shape=None):
        self.examination_logits = self.add_weight(
            shape=(self.buckets,), initializer="zeros", name="examination_logits"
        )

    def call(self, position):
        position = ops.reshape(ops.cast(position, "float32"), (-1,))
        known = ops.cast(position > 0.0, "float32")
        bucket = ops.cast(ops.clip(ops.round(position), 1.0, float(self.buckets)), "int32") - 1
        examined = ops.exp(-ops.softplus(ops.take(self.examination_logits, bucket)))
        return ops.reshape(known * examined + (1.0 - known), (-1, 1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update({"buckets": self.buckets})
        return config
