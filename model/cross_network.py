import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mlpr")
class CrossNetwork(keras.layers.Layer):
    """DCN-V2's cross network (Wang et al., WWW 2021): explicit feature crosses of bounded
    degree, x_{l+1} = x_0 * (x_l @ W_l + b_l) + x_l for l = 0..L-1, with full-rank W_l [D, D];
    layer l crosses the input up to degree l + 2. The output has the input's width D; the
    "stacked" DCN-V2 feeds it to a deep network (the ranker's shared bottom).

    Serving splits the first product by input part like every first layer of the scorer
    (serving/first_layer.py): `first_layer_parts()` gives (W_0, b_0) and the identity, whose
    product is x_0 itself, and `from_first_layer` continues from there.

    Args:
        num_layers: L, the number of cross layers (>= 1).

    Examples:
        >>> cross = CrossNetwork(num_layers=2)
        >>> cross(keras.ops.ones((4, 3))).shape
        (4, 3)
    """

    def __init__(self, num_layers=3, **kwargs):
        super().__init__(**kwargs)
        if int(num_layers) < 1:
            raise ValueError(f"`num_layers` must be >= 1, got {num_layers}")
        self.num_layers = int(num_layers)

    def build(self, input_shape):
        width = input_shape[-1]
        self.kernels = [
            self.add_weight(
                shape=(width, width), initializer="glorot_uniform", name=f"cross_kernel_{i}"
            )
            for i in range(self.num_layers)
        ]
        self.biases = [
            self.add_weight(shape=(width,), initializer="zeros", name=f"cross_bias_{i}")
            for i in range(self.num_layers)
        ]
        self.width = width

    def call(self, inputs):
        first = ops.matmul(inputs, self.kernels[0]) + self.biases[0]
        return self.from_first_layer([first, inputs])

    def first_layer_parts(self):
        """`[(W_0, b_0), (identity, None)]`: the linear maps of the input that the network
        starts from (its first cross product, and x_0 itself)."""
        return [(self.kernels[0], self.biases[0]), (ops.eye(self.width), None)]

    def from_first_layer(self, parts, training=None):
        """The network's output from x_0 @ W_0 + b_0 and x_0."""
        first, x0 = parts
        x = x0 * first + x0
        for kernel, bias in zip(self.kernels[1:], self.biases[1:], strict=True):
            x = x0 * (ops.matmul(x, kernel) + bias) + x
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"num_layers": self.num_layers})
        return config
