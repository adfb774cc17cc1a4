"""Domain pretraining of the text encoder on the engagement log (two towers).

A query tower and a product tower share the encoder backbone (initialised from the chosen
preset: "tiny" is a DistilBERT-architecture encoder trained from scratch with a WordPiece
vocabulary learned from the catalog and the queries, fully offline; "all-minilm-l6-v2" or any
local keras-hub / Hugging Face directory; a hub preset where one is reachable) and each has
its own 256-d projection, shaped like MLPR's query and product projections.

Training lists, one per query of the train split and epoch: up to `max_positives` products
engaged with the query (clicked; grade 1 click, 2 add-to-cart, 3 purchase) and `ratio`
negatives per engaged product, never one engaged with the query: products drawn at random from
the catalog, or with `hard_negatives` first the query's own shown-but-not-engaged products
(then random ones up to the same ratio). The scores are scaled cosine similarities, and the
loss is the softmax cross-entropy against the target distribution proportional to the gains
2^grade - 1 (ListNet): engaged products above negatives, purchased above added-to-cart above
clicked.

Output, a keras-hub preset directory the train step loads as its encoder preset: the backbone
and tokenizer (`save_to_preset`), `projections.npz` (the two projections, which the train step
copies into MLPR's when the shapes match) and `pretrain_info.json` (the configuration and the
retrieval metrics of the eval split before and after pretraining: recall@10 and NDCG@10 of the
engaged products among `eval_negatives` random ones, and NDCG@5 of the order the encoder gives
each query's own shown products, which is the ranker's task).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import defaultdict

import keras
import numpy as np
import tensorflow as tf

from components.pretrain.sampler import DEFAULT_RATIO, NegativeSampler
from components.train.inputs import split_files
from contract import schema as S
from contract.features import read_transformed
from model.encoder import TextEncoder
from model.presets import TINY, load_encoder
from model.text_preprocessor import TextPreprocessor

PROJECTIONS_FILE = "projections.npz"
INFO_FILE = "pretrain_info.json"


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Args:
    encoder_preset: where the encoder starts (see the module doc).
    epochs: passes over the train queries (fresh negatives each time).
    queries_per_batch: lists per training step.
    max_positives: engaged products per list (the highest grades first, ties at random).
    ratio: negatives per engaged product.
    hard_negatives: take the query's shown-but-not-engaged products as negatives first.
    projection_dim: width of both projections (MLPR's projection_dim).
    learning_rate: AdamW learning rate.
    query_length, product_length: token lengths, as in training.
    eval_negatives: random products ranked with each eval query's engaged ones.
    seed: seeds sampling and initialisation.
    """

    encoder_preset: str = TINY
    epochs: int = 3
    queries_per_batch: int = 16
    max_positives: int = 4
    ratio: int = DEFAULT_RATIO
    hard_negatives: bool = False
    projection_dim: int = 256
    learning_rate: float = 5e-4
    query_length: int = 16
    product_length: int = 48
    eval_negatives: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "queries_per_batch", "max_positives", "ratio", "projection_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclasses.dataclass
class EngagementData:
    """The catalog (product texts) and, per query of a split, its engaged products with their
    gains and the products it showed without engagement."""

    product_ids: list[str]
    product_texts: list[str]
    engaged: dict[str, dict[int, float]]  # query -> {product index: gain 2^grade - 1 > 0}
    shown: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # not engaged


def gains_of(batch: dict) -> np.ndarray:
    """The gain 2^grade - 1 of each pair of a batch of transformed examples, grade = how deep
    in the funnel it went (0 none, 1 click, 2 add-to-cart, 3 purchase)."""
    grades = sum(batch[t].numpy().reshape(-1).astype(int) for t in S.TASKS)
    return 2.0**grades - 1.0


def read_engagement(transformed_dir: str, tft_output, split: str, catalog=None) -> EngagementData:
    """Engaged (query, product, grade) of `split`; the catalog is every product of every split
    (or `catalog`'s, extended)."""
    ids = list(catalog.product_ids) if catalog else []
    texts = list(catalog.product_texts) if catalog else []
    index = {p: i for i, p in enumerate(ids)}
    engaged: dict[str, dict[int, float]] = defaultdict(dict)
    shown: dict[str, list[int]] = defaultdict(list)
    splits = S.SPLITS if catalog is None else (split,)
    for name in splits:
        for batch in read_transformed(split_files(transformed_dir, name), tft_output, 4096):
            queries = batch[S.QUERY].numpy()
            products = batch[S.PRODUCT_ID].numpy()
            product_texts = batch[S.PRODUCT_TEXT].numpy()
            gains = gains_of(batch)
            for q, p, text, gain in zip(queries, products, product_texts, gains, strict=True):
                p = p.decode("utf-8", "replace")
                if p not in index:
                    index[p] = len(ids)
                    ids.append(p)
                    texts.append(text.decode("utf-8", "replace"))
                if name != split:
                    continue
                query = q.decode("utf-8", "replace")
                if gain > 0:  # clicked (the funnel check keeps deeper stages below clicks)
                    engaged[query][index[p]] = float(gain)
                else:
                    shown[query].append(index[p])
    return EngagementData(ids, texts, dict(engaged), dict(shown))


def training_lists(data: EngagementData, config: PretrainConfig, sampler, rng):
    """One list per engaged query: (query, product indices [K], target [K], mask [K]),
    K = max_positives * (1 + ratio); padded slots are masked out."""
    width = config.max_positives * (1 + config.ratio)
    queries = sorted(data.engaged)
    for i in rng.permutation(len(queries)):
        query = queries[i]
        gains = data.engaged[query]
        order = sorted(gains, key=lambda p: (-gains[p], rng.random()))[: config.max_positives]
        hard = data.shown.get(query, ()) if config.hard_negatives else ()
        negatives = sampler.sample(gains, count=config.ratio * len(order), hard=hard)
        products = np.zeros(width, dtype=np.int64)
        target = np.zeros(width, dtype=np.float32)
        mask = np.zeros(width, dtype=np.float32)
        chosen = np.concatenate([np.asarray(order, dtype=np.int64), negatives])
        products[: len(chosen)] = chosen
        mask[: len(chosen)] = 1.0
        weights = np.array([gains[p] for p in order], dtype=np.float32)
        target[: len(order)] = weights / weights.sum()
        yield query, products, target, mask


class TwoTower(keras.Model):
    """Shared encoder, a projection per tower, scaled cosine scores over each list."""

    def __init__(self, encoder: TextEncoder, projection_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.query_projection = keras.layers.Dense(projection_dim, name="query_projection")
        self.product_projection = keras.layers.Dense(projection_dim, name="product_projection")
        self.log_scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(np.log(20.0)), name="log_scale"
        )

    def embed_queries(self, tokens: dict) -> tf.Tensor:
        vec = self.encoder(
            {"token_ids": tokens["query_token_ids"], "padding_mask": tokens["query_padding_mask"]}
        )
        return tf.math.l2_normalize(self.query_projection(vec), axis=-1)

    def embed_products(self, tokens: dict) -> tf.Tensor:
        vec = self.encoder(
            {
                "token_ids": tokens["product_token_ids"],
                "padding_mask": tokens["product_padding_mask"],
            }
        )
        return tf.math.l2_normalize(self.product_projection(vec), axis=-1)

    def call(self, inputs):
        q = self.embed_queries(inputs["query"])
        p = self.embed_products(inputs["products"])
        width = tf.shape(inputs["mask"])[1]
        p = tf.reshape(p, [-1, width, p.shape[-1]])
        logits = tf.exp(self.log_scale) * tf.einsum("bd,bkd->bk", q, p)
        return tf.where(inputs["mask"] > 0, logits, tf.fill(tf.shape(logits), -1e9))


def _tokenize(preprocessor: TextPreprocessor, queries, product_texts) -> tuple[dict, dict]:
    tokens = preprocessor(queries, product_texts)
    cast = {k: tf.cast(v, tf.int32) for k, v in tokens.items()}
    return (
        {k: v for k, v in cast.items() if k.startswith("query")},
        {k: v for k, v in cast.items() if k.startswith("product")},
    )


def retrieval_metrics(model: TwoTower, preprocessor, data: EngagementData, config, k=10) -> dict:
    """Per eval query, averaged over queries: recall@k and NDCG@k (the gains) of its engaged
    products among `eval_negatives` random catalog products, and `shown_ndcg@5`: NDCG@5 of
    the order the encoder's cosine gives the query's own shown products (engaged and not),
    over the queries with at least two."""
    from components.evaluate.metrics import ndcg_at_k

    sampler = NegativeSampler(len(data.product_ids), seed=config.seed + 1)
    texts = np.array(data.product_texts, dtype=object)
    recalls, query_ids, labels, scores = [], [], [], []
    shown_ids, shown_labels, shown_scores = [], [], []
    for query in sorted(data.engaged):
        gains = data.engaged[query]
        positives = np.array(sorted(gains), dtype=np.int64)
        negatives = sampler.sample(gains, count=config.eval_negatives)
        unengaged = np.array(data.shown.get(query, []), dtype=np.int64)
        candidates = np.concatenate([positives, negatives, unengaged])
        query_tokens, _ = _tokenize(preprocessor, tf.constant([query]), tf.zeros([0], tf.string))
        _, product_tokens = _tokenize(
            preprocessor, tf.zeros([0], tf.string), tf.constant(list(texts[candidates]))
        )
        q = model.embed_queries(query_tokens)
        p = model.embed_products(product_tokens)
        score = tf.linalg.matvec(p, q[0]).numpy()
        sampled = len(positives) + len(negatives)
        top = set(np.argsort(-score[:sampled], kind="stable")[:k])
        recalls.append(len(top & set(range(len(positives)))) / min(len(positives), k))
        positive_gains = [gains[int(c)] for c in positives]
        query_ids += [query] * sampled
        labels += positive_gains + [0.0] * len(negatives)
        scores += score[:sampled].tolist()
        if len(positives) + len(unengaged) >= 2:
            shown_ids += [query] * (len(positives) + len(unengaged))
            shown_labels += positive_gains + [0.0] * len(unengaged)
            shown_scores += score[: len(positives)].tolist() + score[sampled:].tolist()
    ndcg = ndcg_at_k(query_ids, labels, scores, k)
    shown = ndcg_at_k(shown_ids, shown_labels, shown_scores, 5) if shown_ids else None
    return {
        f"recall@{k}": float(np.mean(recalls)) if recalls else float("nan"),
        f"ndcg@{k}": ndcg.mean,
        "shown_ndcg@5": shown.mean if shown else float("nan"),
        "queries": ndcg.queries_used,
    }


def run_pretrain(
    transform_dir: str, transformed_dir: str, output_dir: str, config: PretrainConfig
) -> dict:
    """Pretrain the encoder; write the preset directory to `output_dir`; return its info."""
    import tensorflow_transform as tft

    start = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(transform_dir)
    train = read_engagement(transformed_dir, tft_output, "train")
    evaluation = read_engagement(transformed_dir, tft_output, "eval", catalog=train)
    if not train.engaged:
        raise ValueError("the train split has no engaged (clicked) product: nothing to learn from")
    texts = None
    if config.encoder_preset == TINY:  # from scratch: a vocabulary of the catalog and queries
        texts = list(train.engaged) + train.product_texts
    backbone, tokenizer = load_encoder(config.encoder_preset, texts=texts, seed=config.seed)
    preprocessor = TextPreprocessor(tokenizer, config.query_length, config.product_length)
    model = TwoTower(TextEncoder(backbone), config.projection_dim)
    before = retrieval_metrics(model, preprocessor, evaluation, config)

    sampler = NegativeSampler(len(train.product_ids), config.ratio, seed=config.seed)
    rng = np.random.default_rng(config.seed)
    texts_array = np.array(train.product_texts, dtype=object)
    optimizer = keras.optimizers.AdamW(learning_rate=config.learning_rate)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def step(query, products, target, mask):
        query_tokens, _ = _tokenize(preprocessor, query, tf.zeros([0], tf.string))
        _, product_tokens = _tokenize(preprocessor, tf.zeros([0], tf.string), products)
        with tf.GradientTape() as tape:
            logits = model(
                {"query": query_tokens, "products": product_tokens, "mask": mask}, training=True
            )
            loss = loss_fn(target, logits)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    history = []
    for _epoch in range(config.epochs):
        losses = []
        lists = list(training_lists(train, config, sampler, rng))
        for start_index in range(0, len(lists), config.queries_per_batch):
            batch = lists[start_index : start_index + config.queries_per_batch]
            query = tf.constant([b[0] for b in batch])
            products = tf.constant([texts_array[i] for b in batch for i in b[1]], dtype=tf.string)
            target = tf.constant(np.stack([b[2] for b in batch]))
            mask = tf.constant(np.stack([b[3] for b in batch]))
            losses.append(float(step(query, products, target, mask)))
        history.append(float(np.mean(losses)))
    after = retrieval_metrics(model, preprocessor, evaluation, config)

    os.makedirs(output_dir, exist_ok=True)
    backbone.save_to_preset(output_dir)
    tokenizer.save_to_preset(output_dir)
    np.savez(
        os.path.join(output_dir, PROJECTIONS_FILE),
        query_kernel=model.query_projection.kernel.numpy(),
        query_bias=model.query_projection.bias.numpy(),
        product_kernel=model.product_projection.kernel.numpy(),
        product_bias=model.product_projection.bias.numpy(),
    )
    info = {
        "config": dataclasses.asdict(config),
        "train_queries": len(train.engaged),
        "eval_queries": len(evaluation.engaged),
        "catalog_products": len(train.product_ids),
        "loss_by_epoch": history,
        "eval_before": before,
        "eval_after": after,
        "seconds": round(time.monotonic() - start, 1),
    }
    with open(os.path.join(output_dir, INFO_FILE), "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2)
    return info


def load_projections(preset_dir: str) -> dict[str, np.ndarray] | None:
    """The pretrained projections of a preset written by `run_pretrain`, or None."""
    path = os.path.join(preset_dir, PROJECTIONS_FILE)
    if not os.path.exists(path):
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
