"""The scorer for serving, with its first matrix products split by what each term depends on.

Every network that reads the scorer's features (the experts and gates of MMoE, a shared
bottom, the per-task networks: whatever the architecture has) starts with a product linear
in those features, `features @ K + b`. The features are a concatenation (the cosine, the
Hadamard product, phi(q), psi(i), the wide features, the categorical embeddings), so the
product is a sum of one term per part, `part @ K[rows of part]`:

- terms of the product alone (psi(i) and its categorical embeddings) are computed once per
  catalog product at export and stored in the product table (`product_terms`), or once per
  candidate on the raw path;
- the query's term (phi(q), with the bias) once per distinct query of a request
  (`query_terms`);
- only the terms that mix the two (the cosine, the Hadamard product) and the per-pair
  ranking features are computed per candidate (`score`), with the encoder's prior (the
  cosine of the unit encoder vectors that phi(q) and psi(i) carry, model/encoder_prior.py),
  which goes to the heads.

The rest of the scorer, from those networks' outputs on, is the scorer's own layers (a
sub-model of it). Serving splits the folded scorer (model/scorer.py `folded_scorer`: batch
norm folded into the weights). `score` equals the trained scorer up to float rounding
(tested to 1e-5).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from contract import schema as S
from model.scorer import FEATURES, feature_segments, prior_layer


class SplitScorer(tf.Module):
    """The trained `scorer` computed from query, product and pair terms.

    Its kernels are copies made at export (the rows of every first-layer kernel that each
    feature part multiplies), saved with the SavedModel.

    Args:
        scorer: a scorer (model/scorer.py), serving's folded form or as trained.
    """

    def __init__(self, scorer: keras.Model):
        super().__init__(name="split_scorer")
        features = scorer.get_layer(FEATURES).output
        self.consumers = [layer for layer in scorer.layers if _reads(layer, features)]
        kernels, biases, self.part_widths = [], [], []
        for layer in self.consumers:
            widths = []
            for kernel, bias in layer.first_layer_parts():
                kernel = np.asarray(keras.ops.convert_to_numpy(kernel), np.float32)
                kernels.append(kernel)
                biases.append(
                    np.zeros(kernel.shape[1], np.float32)
                    if bias is None
                    else np.asarray(keras.ops.convert_to_numpy(bias), np.float32)
                )
                widths.append(kernel.shape[1])
            self.part_widths.append(widths)
        kernel = np.concatenate(kernels, axis=1)
        segments = feature_segments(scorer)
        if sum(width for _, width in segments) != kernel.shape[0]:
            raise ValueError(f"feature parts {segments} do not add up to {kernel.shape[0]} rows")
        rows, start = {}, 0
        for name, width in segments:
            rows[name] = kernel[start : start + width]
            start += width
        self.width = kernel.shape[1]
        self.kinds = [name for name, _ in segments]
        # Query-only: phi(q) and the bias; product-only: psi(i) and the embeddings.
        query = rows.get("query", np.zeros([0, self.width], np.float32))
        self.query_kernel = tf.Variable(query, trainable=False, name="query_kernel")
        self.bias = tf.Variable(np.concatenate(biases), trainable=False, name="bias")
        product = rows.get("product", np.zeros([0, self.width], np.float32))
        self.product_kernel = tf.Variable(product, trainable=False, name="product_kernel")
        self.categorical_kernel = tf.Variable(
            np.concatenate([rows[c] for c in S.CATEGORICAL_COLUMNS]), trainable=False
        )
        self.embeddings = [scorer.get_layer(f"{c}_embedding") for c in S.CATEGORICAL_COLUMNS]
        # Per candidate: the cosine, the Hadamard product and the wide features.
        self.cosine_kernel = tf.Variable(
            rows.get("cosine", np.zeros([1, self.width], np.float32)), trainable=False
        )
        self.hadamard_kernel = tf.Variable(
            rows.get("hadamard", np.zeros([0, self.width], np.float32)), trainable=False
        )
        self.wide_kernel = tf.Variable(rows[S.WIDE], trainable=False, name="wide_kernel")
        # The encoder's prior (model/encoder_prior.py): phi(q) and psi(i) carry the unit
        # encoder vector after their projection; its cosine goes to the heads.
        self.prior = prior_layer(scorer)
        prior = [] if self.prior is None else [self.prior.output[2]]
        # The scorer from the outputs of the networks that read the features, the market id
        # (the region masks') and the prior.
        outputs = [t for layer in self.consumers for t in keras.tree.flatten(layer.output)]
        self.rest = keras.Model(
            inputs=[*outputs, scorer.get_layer(S.MARKET_ID).output, *prior],
            outputs={t: scorer.get_layer(t).output for t in scorer.output_names},
        )

    def _projected(self, embedding: tf.Tensor) -> tf.Tensor:
        """phi(q) or psi(i) without the unit encoder vector the prior reads."""
        if self.prior is None:
            return embedding
        return embedding[:, : self.prior.projection_dim]

    def query_terms(self, phi: tf.Tensor) -> tf.Tensor:
        """phi(q) [Q, d] -> its first-layer terms and the bias [Q, W]."""
        if "query" not in self.kinds:
            return tf.broadcast_to(self.bias, [tf.shape(phi)[0], self.width])
        return tf.matmul(self._projected(phi), self.query_kernel) + self.bias

    def product_terms(self, psi: tf.Tensor, category_ids: list[tf.Tensor]) -> tf.Tensor:
        """psi(i) [N, d] and the categorical ids (one [N] int tensor per column) -> their
        first-layer terms [N, W]."""
        embedded = tf.concat(
            [
                layer(tf.cast(ids, tf.int32))
                for layer, ids in zip(self.embeddings, category_ids, strict=True)
            ],
            axis=1,
        )
        terms = tf.matmul(embedded, self.categorical_kernel)
        if "product" in self.kinds:
            terms += tf.matmul(self._projected(psi), self.product_kernel)
        return terms

    def score(self, phi, psi, query_terms, product_terms, wide, market=None) -> dict:
        """One probability [N, 1] per task from each candidate's phi(q), psi(i), query terms,
        product terms (all [N, ...]), wide features and market id (None: market 0)."""
        prior = []
        if self.prior is not None:
            phi, psi, cosine = self.prior([phi, psi])
            prior = [cosine]
        pre = query_terms + product_terms + tf.matmul(wide, self.wide_kernel)
        if "cosine" in self.kinds:
            q = phi / tf.maximum(tf.norm(phi, axis=-1, keepdims=True), 1e-12)
            p = psi / tf.maximum(tf.norm(psi, axis=-1, keepdims=True), 1e-12)
            pre += tf.reduce_sum(q * p, axis=-1, keepdims=True) * self.cosine_kernel
        if "hadamard" in self.kinds:
            pre += tf.matmul(phi * psi, self.hadamard_kernel)
        widths = [w for layer_widths in self.part_widths for w in layer_widths]
        parts = tf.split(pre, widths, axis=1)
        outputs, start = [], 0
        for layer, layer_widths in zip(self.consumers, self.part_widths, strict=True):
            own = parts[start : start + len(layer_widths)]
            start += len(layer_widths)
            outputs += keras.tree.flatten(layer.from_first_layer(own, training=False))
        if market is None:
            market = tf.zeros([tf.shape(wide)[0]], tf.int32)
        return self.rest([*outputs, tf.cast(market, tf.int32), *prior], training=False)


def _reads(layer: keras.layers.Layer, features) -> bool:
    """Whether `layer` reads the features (then it reads nothing else)."""
    inputs = (
        keras.tree.flatten(layer.input) if not isinstance(layer, keras.layers.InputLayer) else []
    )
    if not any(t is features for t in inputs):
        return False
    if not all(t is features for t in inputs):
        raise ValueError(f"layer {layer.name!r} reads the features and other inputs")
    if not hasattr(layer, "first_layer_parts"):
        raise ValueError(f"layer {layer.name!r} reads the features but has no first_layer_parts")
    return True
