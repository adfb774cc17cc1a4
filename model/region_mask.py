import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mlpr")
class RegionMask(keras.layers.Layer):
    """A market's mask over a representation, generated from the market (SEQ+MD's region
    mask for multi-market ranking): h' = h * 2 sigmoid(rate * e_m), where e_m is the market's
    learned vector of the representation's width. The masks start at exactly 1 (e_m = 0:
    every market ranks as the unmasked model does) and learn which units each market turns
    up or down, from one shared model. `rate` multiplies the pace at which they learn (an
    Adam step moves e_m by about the learning rate whatever its gradient); at 10 the masks
    ranked worse on the demo shop's markets than at 1 (benchmarks/results/
    markets_demo_mask_rate10/ against markets_demo/). The scorer applies one to each task's input (the expert
    mixture, shared bottom or task network) and one to each tower's output (model/scorer.py).

    Inputs: [representation [batch, width], market id [batch] or [batch, 1]]; an id outside
    [0, markets) is clipped into it (the vocabulary's out-of-vocabulary bucket is one of them).
    Output: the masked representation [batch, width].

    Args:
        markets: the number of market ids (the market vocabulary's size, out-of-vocabulary
            bucket included).
        rate: how much faster than the other weights the mask logits learn (> 0).

    Examples:
        >>> mask = RegionMask(markets=3)
        >>> out = mask([keras.ops.ones((2, 4)), keras.ops.convert_to_tensor([0, 2])])
        >>> keras.ops.convert_to_numpy(out).tolist()[0]  # untrained: the identity
        [1.0, 1.0, 1.0, 1.0]
    """

    def __init__(self, markets, rate=1.0, **kwargs):
        super().__init__(**kwargs)
        if int(markets) < 1:
            raise ValueError(f"`markets` must be >= 1, got {markets}")
        if rate <= 0:
            raise ValueError(f"`rate` must be > 0, got {rate}")
        self.markets = int(markets)
        self.rate = float(rate)

    def build(self, input_shape):
        width = input_shape[0][-1]
        self.market_logits = self.add_weight(
            shape=(self.markets, width), initializer="zeros", name="market_logits"
        )

    def call(self, inputs):
        representation, market = inputs
        market = ops.clip(ops.reshape(ops.cast(market, "int32"), (-1,)), 0, self.markets - 1)
        mask = 2.0 * ops.sigmoid(self.rate * ops.take(self.market_logits, market, axis=0))
        return representation * ops.cast(mask, representation.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update({"markets": self.markets, "rate": self.rate})
        return config
