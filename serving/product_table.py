"""The pre-computed product catalog carried by the serving SavedModel (the paper's "product
pre-computing"): psi(i) and the categorical vocabulary ids of every product the pipeline saw,
looked up by product id, so a ranking request needs only the query and the product ids.

The catalog is the distinct products of the transformed splits (train, eval and test); the
first record of a product id wins. Embeddings are computed once, at export, with the trained
ranker's product encoder, so they equal what the raw path computes from the same fields. So
are the product's first-layer terms of the scorer (serving/first_layer.py), when exported
with them.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from contract import schema as S
from contract.features import read_transformed
from model.ranker import categorical_input_names
from serving.signatures import PRODUCT_EMBEDDING

TERMS_BATCH = 4096


# The table's columns, as `ProductTable.lookup` names them.
CATEGORY_IDS = "category_ids"
PRODUCT_TERMS = "first_layer_terms"


class ProductTable(tf.Module):
    """product_id -> row of the pre-computed columns.

    Args:
        product_ids: the catalog's ids, one per row (distinct).
        embeddings: float32 [P, d], psi(i) per product.
        category_ids: int32 [P, C], the vocabulary ids of `categorical_input_names()`.
        terms: float32 [P, W] or None, each product's first-layer terms of the scorer
            (serving/first_layer.py).
    """

    def __init__(
        self,
        product_ids: list[bytes],
        embeddings: np.ndarray,
        category_ids: np.ndarray,
        terms: np.ndarray | None = None,
    ):
        super().__init__(name="product_table")
        if not product_ids:
            raise ValueError("the product catalog is empty: no products to pre-compute")
        if len(set(product_ids)) != len(product_ids):
            raise ValueError("product_ids must be distinct")
        columns = {PRODUCT_EMBEDDING: embeddings.astype(np.float32)}
        columns[CATEGORY_IDS] = category_ids.astype(np.int32)
        if terms is not None:
            columns[PRODUCT_TERMS] = terms.astype(np.float32)
        for name, values in columns.items():
            if values.shape[0] != len(product_ids):
                raise ValueError(
                    f"{len(product_ids)} product ids but {values.shape[0]} {name} rows"
                )
        self.size = len(product_ids)
        self.nbytes = sum(values.nbytes for values in columns.values())
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(product_ids, tf.string),
                tf.range(self.size, dtype=tf.int64),
            ),
            default_value=-1,
        )
        self.columns = {
            name: tf.Variable(values, trainable=False, name=name)
            for name, values in columns.items()
        }

    def lookup(self, product_ids: tf.Tensor, columns: list[str]) -> dict[str, tf.Tensor]:
        """The rows of `columns` for `product_ids` ([N, ...]); an id outside the catalog fails
        the request with InvalidArgument naming the unknown ids (INVALID_ARGUMENT in TF
        Serving). Only the columns asked for are read: a read whose result goes unused keeps
        TF Serving's graph optimizer from inlining the signature's function."""
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
        return {name: tf.gather(self.columns[name], rows) for name in columns}


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
    files: list[str], tft_output: tft.TFTransformOutput, product_vectors, product_terms=None
) -> ProductTable:
    """The catalog of `files` with psi(i) from `product_vectors` (product texts -> [P, d])
    and, given `product_terms` (psi(i) [n, d], category ids [n, C] -> [n, W]), each
    product's first-layer terms, computed in batches."""
    catalog = read_catalog(files, tft_output)
    embeddings = np.asarray(product_vectors(catalog["texts"]), dtype=np.float32)
    category_ids = catalog["category_ids"]
    terms = None
    if product_terms is not None:
        terms = np.concatenate(
            [
                np.asarray(
                    product_terms(
                        embeddings[i : i + TERMS_BATCH], category_ids[i : i + TERMS_BATCH]
                    )
                )
                for i in range(0, len(embeddings), TERMS_BATCH)
            ]
        )
    return ProductTable(catalog["ids"], embeddings, category_ids, terms)
