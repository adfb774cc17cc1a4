"""The pre-computed product catalog carried by the serving SavedModel (the paper's "product
pre-computing"): psi(i) and the categorical vocabulary ids of every product the pipeline saw,
looked up by product id, so a ranking request needs only the query and the product ids.

The catalog is the distinct products of the transformed splits (train, eval and test); the
first record of a product id wins. Embeddings are computed once, at export, with the trained
ranker's product encoder, so they equal what the raw path computes from the same fields.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from contract import schema as S
from contract.features import read_transformed
from model.ranker import categorical_input_names


class ProductTable(tf.Module):
    """product_id -> row of the pre-computed embeddings and categorical ids.

    Args:
        product_ids: the catalog's ids, one per row (distinct).
        embeddings: float32 [P, d], psi(i) per product.
        category_ids: int32 [P, C], the vocabulary ids of `categorical_input_names()`.
    """

    def __init__(self, product_ids: list[bytes], embeddings: np.ndarray, category_ids: np.ndarray):
        super().__init__(name="product_table")
        if not product_ids:
            raise ValueError("the product catalog is empty: no products to pre-compute")
        if len(set(product_ids)) != len(product_ids):
            raise ValueError("product_ids must be distinct")
        if embeddings.shape[0] != len(product_ids) or category_ids.shape[0] != len(product_ids):
            raise ValueError(
                f"{len(product_ids)} product ids but {embeddings.shape[0]} embeddings and "
                f"{category_ids.shape[0]} categorical rows"
            )
        self.size = len(product_ids)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(product_ids, tf.string),
                tf.range(self.size, dtype=tf.int64),
            ),
            default_value=-1,
        )
        self.embeddings = tf.Variable(embeddings.astype(np.float32), trainable=False)
        self.category_ids = tf.Variable(category_ids.astype(np.int32), trainable=False)

    def lookup(self, product_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(embeddings [N, d], category ids [N, C]); an id outside the catalog fails the
        request with InvalidArgument naming the unknown ids (INVALID_ARGUMENT in TF Serving)."""
        rows = self.table.lookup(product_ids)
        unknown = rows < 0
        check = tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(unknown)),
            [
                f"unknown product_id(s), not in the pre-computed catalog of {self.size} "
                "products (rank them with serving_default, which takes the product fields):",
                _printable(tf.boolean_mask(product_ids, unknown)),
            ],
            summarize=10,
        )
        with tf.control_dependencies([check]):
            rows = tf.identity(rows)
        return tf.gather(self.embeddings, rows), tf.gather(self.category_ids, rows)


def _printable(ids: tf.Tensor) -> tf.Tensor:
    """Ids as an error message may quote them: the first 64 bytes, as valid UTF-8."""
    return tf.strings.unicode_transcode(
        tf.strings.substr(ids, 0, 64), "UTF-8", "UTF-8", errors="replace"
    )


def read_catalog(files: list[str], tft_output: tft.TFTransformOutput) -> dict:
    """The distinct products of transformed records: ids, product texts and categorical ids."""
    ids: list[bytes] = []
    texts: list[bytes] = []
    categories: list[np.ndarray] = []
    seen: set[bytes] = set()
    names = categorical_input_names()
    for batch in read_transformed(files, tft_output, 4096):
        batch_ids = batch[S.PRODUCT_ID].numpy()
        batch_texts = batch[S.PRODUCT_TEXT].numpy()
        batch_categories = np.stack([batch[n].numpy() for n in names], axis=1)
        for i, pid in enumerate(batch_ids):
            if pid in seen:
                continue
            seen.add(pid)
            ids.append(pid)
            texts.append(batch_texts[i])
            categories.append(batch_categories[i])
    if not ids:
        raise ValueError(f"no products in the transformed records {files}")
    return {"ids": ids, "texts": texts, "category_ids": np.stack(categories).astype(np.int32)}


def build_product_table(
    files: list[str], tft_output: tft.TFTransformOutput, product_vectors
) -> ProductTable:
    """The catalog of `files` with psi(i) from `product_vectors` (product texts -> [P, d])."""
    catalog = read_catalog(files, tft_output)
    embeddings = np.asarray(product_vectors(catalog["texts"]), dtype=np.float32)
    return ProductTable(catalog["ids"], embeddings, catalog["category_ids"])
