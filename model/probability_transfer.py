import keras


@keras.saving.register_keras_serializable(package="mlpr")
class ProbabilityTransfer(keras.layers.Layer):
    """Chains conditional funnel probabilities into joint ones (the paper's eq. 8).

    Given `[p_ctr, p_avr, p_cvr]` (P(click), P(add-to-cart | click), P(purchase | add-to-cart)),
    returns `[p_ctr, p_ctr * p_avr, p_ctr * p_avr * p_cvr]`, so each task is modelled over
    the whole impression space and the predictions respect the funnel order.

    Examples:
        >>> layer = ProbabilityTransfer()
        >>> [float(p[0, 0]) for p in layer([keras.ops.full((1, 1), v) for v in (0.5, 0.4, 0.5)])]
        [0.5, 0.2, 0.1]
    """

    def call(self, inputs):
        if len(inputs) < 1:
            raise ValueError("ProbabilityTransfer needs at least one probability tensor")
        joint, outputs = None, []
        for p in inputs:
            joint = p if joint is None else joint * p
            outputs.append(joint)
        return outputs

    def compute_output_shape(self, input_shape):
        return list(input_shape)
