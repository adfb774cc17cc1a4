"""tf.data input pipeline from the transformed TFRecords, and the mapping from transformed
features to model inputs (shared with the serving export, so training and serving agree)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components.train.config import check_targets
from contract import layout
from contract import schema as S
from contract.features import read_transformed


def split_files(transformed_dir: str, split: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(layout.split_pattern(transformed_dir, split)))
    if not files:
        raise ValueError(
            f"no transformed {split} records in {transformed_dir} "
            f"(expected {layout.split_pattern(transformed_dir, split)})"
        )
    return files


def to_model_inputs(transformed: dict, preprocessor) -> dict:
    """Transformed features (TFT outputs) -> the ranker's input dict (no text inputs when
    `preprocessor` is None, for models that use only the wide features)."""
    inputs = {}
    if preprocessor is not None:
        text = preprocessor(transformed[S.QUERY], transformed[S.PRODUCT_TEXT])
        inputs = {name: tf.cast(value, tf.int32) for name, value in text.items()}
    inputs[S.WIDE] = tf.cast(transformed[S.WIDE], tf.float32)
    for column in S.CATEGORICAL_COLUMNS:
        name = S.vocab_id_name(column)
        inputs[name] = tf.cast(transformed[name], tf.int32)
    inputs[S.MARKET_ID] = market_ids(transformed)
    return inputs


def market_ids(transformed: dict):
    """Each row's market id: the transform's `market_id`, or 0 for a log without markets."""
    if S.MARKET_ID in transformed:
        return tf.cast(transformed[S.MARKET_ID], tf.int32)
    return tf.zeros_like(tf.cast(transformed[S.WIDE][:, 0], tf.int32))


def label_columns(available, tasks: Sequence[str], targets: str = "rate") -> dict[str, str]:
    """Training label -> the transformed column it comes from: each of `tasks` (its rate or
    its binary label, by `targets`; the relevance task's label is its own column), and the
    logged position when the data has it (for position-bias-aware training;
    model/position_bias.py)."""
    check_targets(targets)
    columns = {
        t: t if t == S.RELEVANCE_TASK or targets != "rate" else S.rate_name(t) for t in tasks
    }
    missing = [c for c in columns.values() if c not in available]
    if missing:
        raise ValueError(
            f"the transformed data lacks {missing} for targets={targets!r}: transform it again "
            "with this version (the rates are written by the transform step)"
        )
    if S.POSITION in available:
        columns[S.POSITION] = S.POSITION
    return columns


def labels_of(transformed: dict, tasks: Sequence[str], targets: str = "rate") -> dict:
    return {
        name: tf.reshape(tf.cast(transformed[column], tf.float32), [-1, 1])
        for name, column in label_columns(transformed, tasks, targets).items()
    }


def make_dataset(
    files: list[str],
    tft_output: tft.TFTransformOutput,
    preprocessor,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    targets: str = "rate",
    epochs: int = 1,
    *,
    tasks: Sequence[str],
) -> tf.data.Dataset:
    """(model inputs, labels) batches for `model.fit` / `model.predict`, with one label per
    task of `tasks`; with `shuffle`, `epochs` passes over the files, each in its own order
    (`shuffled_epochs`)."""
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    batches = (
        shuffled_epochs(records, batch_size, seed, epochs, buffer=10_000)
        if shuffle
        else records.batch(batch_size)
    )
    spec = tft_output.transformed_feature_spec()

    def parse(serialized):
        transformed = tf.io.parse_example(serialized, spec)
        return to_model_inputs(transformed, preprocessor), labels_of(transformed, tasks, targets)

    return batches.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def shuffled_epochs(
    data: tf.data.Dataset, batch_size: int, seed: int, epochs: int, buffer: int
) -> tf.data.Dataset:
    """`epochs` passes over `data` in batches, each pass shuffled (through a buffer of
    `buffer` elements) by a fixed seed of its own, one after the other in one dataset: train
    with `steps_per_epoch`. Fixed seeds give the same order under a tf.distribute strategy as
    on one device: a reshuffling dataset starts from another state once a strategy copies
    it. Batches do not straddle passes."""
    passes = [
        data.shuffle(buffer, seed=seed * 1_000 + epoch, reshuffle_each_iteration=False).batch(
            batch_size
        )
        for epoch in range(epochs)
    ]
    out = passes[0]
    for one in passes[1:]:
        out = out.concatenate(one)
    return out


def list_order(query_index: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of the examples that keeps each query's examples together, in their
    order, with the queries in a random order drawn from `seed`."""
    queries = np.unique(query_index)
    rank = np.empty(int(queries.max()) + 1 if queries.size else 0, dtype=np.int64)
    rank[queries] = np.random.default_rng(seed).permutation(queries.size)
    return np.argsort(rank[query_index], kind="stable")


def shuffled_lists(
    columns: dict, query_index: np.ndarray, batch_size: int, seed: int, epochs: int
) -> tf.data.Dataset:
    """`epochs` passes over `columns` (equal-length arrays) in batches, each pass in a
    `list_order` of its own seed, one after the other (as `shuffled_epochs`, for listwise
    training: a batch holds whole queries, but for the one or two its edges cut)."""
    passes = [
        tf.data.Dataset.from_tensor_slices(
            {name: values[order] for name, values in columns.items()}
        ).batch(batch_size)
        for order in (list_order(query_index, seed * 1_000 + epoch) for epoch in range(epochs))
    ]
    out = passes[0]
    for one in passes[1:]:
        out = out.concatenate(one)
    return out


def training_texts(files: list[str], tft_output: tft.TFTransformOutput, limit: int) -> list[str]:
    """Query and product texts of the training split (for learning a vocabulary)."""
    texts: list[str] = []
    for batch in read_transformed(files, tft_output, 1024):
        for column in (S.QUERY, S.PRODUCT_TEXT):
            texts.extend(v.decode("utf-8", "replace") for v in batch[column].numpy())
        if len(texts) >= limit:
            break
    return list(itertools.islice(texts, limit))


def wide_and_labels(
    files: list[str], tft_output: tft.TFTransformOutput, tasks: Sequence[str], targets: str = "rate"
) -> tuple:
    """The whole split as numpy: the wide feature matrix and the labels of each of `tasks`."""
    columns = label_columns(tft_output.transformed_feature_spec(), tasks, targets)
    wide, labels = [], {t: [] for t in tasks}
    for batch in read_transformed(files, tft_output, 4096):
        wide.append(batch[S.WIDE].numpy())
        for t in tasks:
            labels[t].append(batch[columns[t]].numpy())
    return np.concatenate(wide), {t: np.concatenate(v) for t, v in labels.items()}


def queries_and_labels(
    files: list[str], tft_output: tft.TFTransformOutput, tasks: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each example's query (bytes) and each task's 0/1 label (evaluation's), in file order."""
    query, labels = [], {t: [] for t in tasks}
    for batch in read_transformed(files, tft_output, 4096):
        query.append(batch[S.QUERY].numpy())
        for t in tasks:
            labels[t].append(batch[t].numpy().reshape(-1))
    return np.concatenate(query), {t: np.concatenate(v) for t, v in labels.items()}


def read_split(files: list[str], tft_output: tft.TFTransformOutput, tasks: Sequence[str]) -> dict:
    """A whole transformed split as numpy: the query, product id and product text (bytes), the wide
    features, the categorical ids, the market ids (0 without markets), the labels and rates of
    each of `tasks` and the logged position (when the transformed data has them)."""
    names = (
        S.QUERY,
        S.PRODUCT_ID,
        S.PRODUCT_TEXT,
        S.WIDE,
        *(S.vocab_id_name(c) for c in S.CATEGORICAL_COLUMNS),
    )
    spec = tft_output.transformed_feature_spec()
    labels = [
        c
        for c in (*tasks, *(S.rate_name(t) for t in tasks), S.POSITION, S.IMPRESSIONS)
        if c in spec
    ]
    columns: dict[str, list] = {n: [] for n in (*names, *labels)}
    markets: list = []
    for batch in read_transformed(files, tft_output, 4096):
        for name in columns:
            columns[name].append(batch[name].numpy())
        markets.append(market_ids(batch).numpy())
    split = {n: np.concatenate(v) for n, v in columns.items()}
    split[S.MARKET_ID] = np.concatenate(markets)
    return split


def cached_dataset(
    split: dict,
    query_index: np.ndarray,
    product_index: np.ndarray,
    encoded_queries,
    encoded_products,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    targets: str = "rate",
    epochs: int = 1,
    *,
    tasks: Sequence[str],
    lists: bool = False,
) -> tf.data.Dataset:
    """(cached-ranker inputs, labels) batches: each example's query and product rows looked
    up in the encoded texts (model/ranker.cached_ranker's inputs). `query_index` and
    `product_index` give each example's row in `encoded_queries` / `encoded_products`
    (text_cache.EncodedTexts): one vector per text, or token vectors padded per batch. With
    `shuffle`, `epochs` shuffled passes (`shuffled_epochs`). With `lists` (listwise tasks),
    the labels carry each example's query (model/multitask_loss.LIST_ID), and shuffled
    passes keep each query's examples together (`shuffled_lists`), so that a batch holds
    whole lists (a batch's edges can cut one)."""
    from model.multitask_loss import LIST_ID
    from model.ranker import (
        PRODUCT_HIDDEN,
        PRODUCT_MASK,
        PRODUCT_VECTOR,
        QUERY_HIDDEN,
        QUERY_MASK,
        QUERY_VECTOR,
    )

    pooled = encoded_queries.pooled and encoded_products.pooled
    tables = {
        side: (
            tf.Variable(encoded.values, trainable=False),
            tf.constant(encoded.offsets[:-1]),
            tf.constant(np.diff(encoded.offsets)),
        )
        for side, encoded in (("query", encoded_queries), ("product", encoded_products))
    }
    categorical = [*(S.vocab_id_name(c) for c in S.CATEGORICAL_COLUMNS), S.MARKET_ID]
    label_map = label_columns(split, tasks, targets)
    columns = {
        "query": query_index.astype(np.int64),
        "product": product_index.astype(np.int64),
        S.WIDE: split[S.WIDE].astype(np.float32),
        **{n: split[n].astype(np.int32) for n in categorical},
        **{
            name: split[column].astype(np.float32).reshape(-1, 1)
            for name, column in label_map.items()
        },
    }
    label_names = [*label_map]
    if lists:
        columns[LIST_ID] = query_index.astype(np.int64).reshape(-1, 1)
        label_names.append(LIST_ID)

    def rows(side: str, index: tf.Tensor):
        values, starts, lengths = tables[side]
        if pooled:
            return tf.gather(values, index), None
        begin, count = tf.gather(starts, index), tf.gather(lengths, index)
        flat = tf.ragged.range(begin, begin + count)
        hidden = tf.RaggedTensor.from_row_lengths(
            tf.gather(values, flat.flat_values), count
        ).to_tensor()
        return hidden, tf.sequence_mask(count, tf.shape(hidden)[1], dtype=tf.int32)

    def to_inputs(batch):
        inputs = {n: batch[n] for n in (S.WIDE, *categorical)}
        query, query_mask = rows("query", batch["query"])
        product, product_mask = rows("product", batch["product"])
        if pooled:
            inputs.update({QUERY_VECTOR: query, PRODUCT_VECTOR: product})
        else:
            inputs.update(
                {
                    QUERY_HIDDEN: query,
                    QUERY_MASK: query_mask,
                    PRODUCT_HIDDEN: product,
                    PRODUCT_MASK: product_mask,
                }
            )
        return inputs, {name: batch[name] for name in label_names}

    if shuffle and lists:
        batches = shuffled_lists(columns, query_index, batch_size, seed, epochs)
    else:
        data = tf.data.Dataset.from_tensor_slices(columns)
        batches = (
            shuffled_epochs(data, batch_size, seed, epochs, buffer=len(query_index))
            if shuffle
            else data.batch(batch_size)
        )
    return batches.map(to_inputs).prefetch(tf.data.AUTOTUNE)
