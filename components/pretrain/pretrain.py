"""Domain pretraining of the text encoder on the engagement log (two towers).

A query tower and a product tower share the encoder backbone (initialised from the chosen
preset: "tiny" is a DistilBERT-architecture encoder trained from scratch with a WordPiece
vocabulary learned from the catalog and the queries, fully offline; "all-minilm-l6-v2" or any
local keras-hub / Hugging Face directory; a hub preset where one is reachable) and each has
its own 256-d projection, shaped like MLPR's query and product projections; both start from
one random projection, so the untrained score is close to the encoder's own cosine.

Training lists, one per query of the train split and epoch: up to `max_positives` products
engaged with the query (clicked; grade 1 click, 2 add-to-cart, 3 purchase) and `ratio`
negatives per engaged product, never one engaged with the query: products drawn at random from
the catalog, or with `hard_negatives` first the query's own shown-but-not-engaged products
(then random ones up to the same ratio). With `in_batch_negatives` (the default) each query
is also scored against the other lists' products of its batch. The scores are scaled cosine
similarities, and the loss is the softmax cross-entropy against the target distribution proportional to the gains
2^grade - 1 (ListNet): engaged products above negatives, purchased above added-to-cart above
clicked.

What trains: every encoder weight (`fine_tune_layers="all"`, as for "tiny" from scratch), or
only the top k transformer blocks and the projections, with the frozen blocks' token vectors
computed once per distinct text and cached (components/train/text_cache.py), so a pretrained
MiniLM is domain-pretrained at a fraction of the cost; k = 0 trains the projections alone.

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
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from components.pretrain.sampler import DEFAULT_RATIO, NegativeSampler
from components.step_log import progress
from components.train.distribute import Placement, placement
from components.train.inputs import split_files
from components.train.text_cache import TextCache
from contract import layout
from contract import schema as S
from contract.features import read_transformed
from model.encoder import ALL_LAYERS, TextEncoder, check_fine_tune_layers
from model.optimizer import EncoderAwareAdamW
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
    learning_rate: AdamW learning rate (projections; the encoder too unless
        `encoder_learning_rate` is set).
    encoder_learning_rate: the learning rate of the encoder's trained blocks (at most
        `learning_rate`); None: `learning_rate` for "tiny", which learns from scratch, and a
        tenth of it for a pretrained preset (the usual BERT practice).
    fine_tune_layers: "all" (every encoder weight trains), or how many top transformer blocks
        train (0: only the projections); below them the encoder's outputs are computed once
        per distinct text and cached.
    in_batch_negatives: every query is also scored against the other lists' products of
        its batch (never one it was engaged with): many more negatives at no encoding cost.
    text_cache_dir: where the frozen part's outputs are kept for a later run; None: a
        temporary folder.
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
    encoder_learning_rate: float | None = None
    fine_tune_layers: int | str = ALL_LAYERS
    in_batch_negatives: bool = True
    text_cache_dir: str | None = None
    query_length: int = 16
    product_length: int = 48
    eval_negatives: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "queries_per_batch", "max_positives", "ratio", "projection_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        object.__setattr__(self, "fine_tune_layers", check_fine_tune_layers(self.fine_tune_layers))
        if self.encoder_preset == TINY and self.fine_tune_layers != ALL_LAYERS:
            raise ValueError(
                "the 'tiny' encoder is random and learns from scratch: pretraining it needs "
                f"fine_tune_layers='all', got {self.fine_tune_layers!r}"
            )
        rate = self.encoder_learning_rate
        if rate is not None and not 0 < rate <= self.learning_rate:
            raise ValueError(
                f"encoder_learning_rate must be in (0, learning_rate={self.learning_rate}], "
                f"got {rate}"
            )


@dataclasses.dataclass
class EngagementData:
    """The catalog (product texts) and, per query of a split, its engaged products with their
    gains and the products it showed without engagement."""

    product_ids: list[str]
    product_texts: list[str]
    engaged: dict[str, dict[int, float]]  # query -> {product index: gain 2^grade - 1 > 0}
    shown: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # not engaged


def gains_of(batch: dict, tasks: Sequence[str]) -> np.ndarray:
    """The gain 2^grade - 1 of each pair of a batch of transformed examples, grade = how deep
    in the funnel of `tasks` it went (0 none, 1 the first task, e.g. click, 2 the second...)."""
    grades = sum(batch[t].numpy().reshape(-1).astype(int) for t in tasks)
    return 2.0**grades - 1.0


def read_engagement(
    transformed_dir: str, tft_output, split: str, tasks: Sequence[str], catalog=None
) -> EngagementData:
    """Engaged (query, product, grade over the funnel of `tasks`) of `split`; the catalog is
    every product of every split (or `catalog`'s, extended)."""
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
            gains = gains_of(batch, tasks)
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
    """Shared encoder, a projection per tower, scaled cosine scores of each query against
    every product of the batch (the mask decides which of them count)."""

    def __init__(self, encoder: TextEncoder, projection_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.query_projection = keras.layers.Dense(projection_dim, name="query_projection")
        self.product_projection = keras.layers.Dense(projection_dim, name="product_projection")
        self.log_scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(np.log(20.0)), name="log_scale"
        )
        # Both towers start from one random projection, so the untrained score is (close to)
        # the encoder's own cosine similarity, as MLPR's tied_projection_init does.
        for projection in (self.query_projection, self.product_projection):
            projection.build((None, encoder.output_dim))
        self.product_projection.kernel.assign(self.query_projection.kernel)

    def encode(self, inputs: dict, training=None) -> tf.Tensor:
        """One vector per text, from what `EncoderInputs` gives: token ids (the whole
        encoder runs), the frozen part's token vectors (only the trained blocks run) or its
        pooled vectors (a frozen encoder: nothing runs)."""
        if "token_ids" in inputs:
            return self.encoder(inputs, training=training)
        if "hidden" in inputs:
            return self.encoder.encode_top(
                inputs["hidden"], inputs["padding_mask"], training=training
            )
        return inputs["vectors"]

    def embed_queries(self, inputs: dict, training=None) -> tf.Tensor:
        vec = self.query_projection(self.encode(inputs, training))
        return tf.math.l2_normalize(vec, axis=-1)

    def embed_products(self, inputs: dict, training=None) -> tf.Tensor:
        vec = self.product_projection(self.encode(inputs, training))
        return tf.math.l2_normalize(vec, axis=-1)

    def call(self, inputs, training=None):
        """Logits [B, M] of B queries against the batch's M products."""
        q = self.embed_queries(inputs["query"], training)
        p = self.embed_products(inputs["products"], training)
        return self.score(q, p, inputs["mask"])

    def score(self, queries: tf.Tensor, products: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Scaled cosines of embedded queries [B, d] against products [M, d], -1e9 where
        `mask` [B, M] is 0."""
        logits = tf.exp(self.log_scale) * tf.matmul(queries, products, transpose_b=True)
        return tf.where(mask > 0, logits, tf.fill(tf.shape(logits), -1e9))


class EncoderInputs:
    """What the trained part of the encoder reads for a batch of texts.

    With every layer trained (`fine_tune_layers="all"`) that is token ids. Otherwise the
    frozen part's outputs are computed once per distinct text (components/train/text_cache.py:
    sorted by length, padded per batch, kept in `cache_dir`) and a batch is looked up:
    the token vectors entering the first trained block, padded to the batch's longest text,
    or with a frozen encoder the pooled vectors.

    Args:
        encoder: the `TextEncoder`; its trained blocks decide what is read.
        preprocessor: the `TextPreprocessor`.
        cache_dir: the text cache's root.
        texts: {"query": [...], "product": [...]} every text a batch may ask for (bytes).
    """

    def __init__(self, encoder: TextEncoder, preprocessor, cache_dir: str, texts: dict):
        self.preprocessor = preprocessor
        self.cached = encoder.trained_blocks < encoder.num_blocks
        self.cache_stats: dict = {}
        self._rows: dict = {}
        if self.cached:
            cache = TextCache(cache_dir, encoder, preprocessor)
            for side, side_texts in texts.items():
                unique = sorted(set(side_texts))
                self._rows[side] = ({t: i for i, t in enumerate(unique)}, cache.get(side, unique))
            self.cache_stats = {**cache.stats, "fingerprint": cache.fingerprint}

    def batch(self, side: str, texts: list[bytes]) -> dict:
        if not self.cached:
            query, product = _sides(side, tf.constant(texts, dtype=tf.string))
            tokens = self.preprocessor(query, product)
            return {
                "token_ids": tf.cast(tokens[f"{side}_token_ids"], tf.int32),
                "padding_mask": tf.cast(tokens[f"{side}_padding_mask"], tf.int32),
            }
        index, encoded = self._rows[side]
        rows = np.array([index[t] for t in texts], dtype=np.int64)
        if encoded.pooled:
            return {"vectors": tf.constant(encoded.values[rows])}
        starts, ends = encoded.offsets[rows], encoded.offsets[rows + 1]
        width = int((ends - starts).max())
        hidden = np.zeros([len(rows), width, encoded.values.shape[1]], np.float32)
        mask = np.zeros([len(rows), width], np.int32)
        for j, (s, e) in enumerate(zip(starts, ends, strict=True)):
            hidden[j, : e - s] = encoded.values[s:e]
            mask[j, : e - s] = 1
        return {"hidden": tf.constant(hidden), "padding_mask": tf.constant(mask)}


def _sides(side: str, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    empty = tf.zeros([0], tf.string)
    return (texts, empty) if side == "query" else (empty, texts)


def embed_all(model: TwoTower, inputs: EncoderInputs, side: str, texts, batch=256) -> np.ndarray:
    """The projected, normalised vectors of `texts` (bytes) on `side`, [n, projection_dim]."""
    embed = model.embed_queries if side == "query" else model.embed_products
    out = [
        embed(inputs.batch(side, list(texts[i : i + batch])), training=False).numpy()
        for i in range(0, len(texts), batch)
    ]
    return np.concatenate(out) if out else np.zeros([0, model.query_projection.units], np.float32)


def batch_mask(lists: list, engaged: list[dict], in_batch_negatives: bool) -> np.ndarray:
    """[B, B*K]: which of the batch's products each query is scored against. Its own list's
    filled slots always; with `in_batch_negatives` also the other lists' products, except
    any the query was engaged with (a product engaged with it is never its negative)."""
    width = len(lists[0][1])
    products = np.concatenate([b[1] for b in lists])
    filled = np.concatenate([b[3] for b in lists]) > 0
    mask = np.zeros([len(lists), len(products)], np.float32)
    for i, (_, _, _, own) in enumerate(lists):
        if in_batch_negatives:
            mask[i] = filled & ~np.isin(products, list(engaged[i]))
        mask[i, i * width : (i + 1) * width] = own
    return mask


def retrieval_metrics(
    model: TwoTower, inputs: EncoderInputs, data: EngagementData, config, k=10
) -> dict:
    """Per eval query, averaged over queries: recall@k and NDCG@k (the gains) of its engaged
    products among `eval_negatives` random catalog products, and `shown_ndcg@5`: NDCG@5 of
    the order the encoder's cosine gives the query's own shown products (engaged and not),
    over the queries with at least two."""
    from components.evaluate.metrics import ndcg_at_k

    sampler = NegativeSampler(len(data.product_ids), seed=config.seed + 1)
    queries = sorted(data.engaged)
    catalog = embed_all(model, inputs, "product", [t.encode() for t in data.product_texts])
    query_vectors = embed_all(model, inputs, "query", [q.encode() for q in queries])
    recalls, query_ids, labels, scores = [], [], [], []
    shown_ids, shown_labels, shown_scores = [], [], []
    for query, q in zip(queries, query_vectors, strict=True):
        gains = data.engaged[query]
        positives = np.array(sorted(gains), dtype=np.int64)
        negatives = sampler.sample(gains, count=config.eval_negatives)
        unengaged = np.array(data.shown.get(query, []), dtype=np.int64)
        score = catalog[np.concatenate([positives, negatives, unengaged])] @ q
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


def _optimizer(model: TwoTower, config: PretrainConfig) -> keras.optimizers.Optimizer:
    """AdamW; the encoder's trained blocks at `encoder_learning_rate` (see PretrainConfig)."""
    rate = config.learning_rate
    encoder_rate = config.encoder_learning_rate
    if encoder_rate is None:
        encoder_rate = rate if config.encoder_preset == TINY else rate / 10
    return EncoderAwareAdamW(
        [v.path for v in model.encoder.trainable_variables],
        encoder_rate / rate,
        learning_rate=rate,
    )


def run_pretrain(
    transform_dir: str,
    transformed_dir: str,
    output_dir: str,
    config: PretrainConfig,
    where: Placement | None = None,
) -> dict:
    """Pretrain the encoder; write the preset directory to `output_dir`; return its info.
    `where`: the strategy (default: every local GPU, components/train/distribute.py); each
    replica takes its share of a batch's queries and scores them against every replica's
    products, so in-batch negatives span the whole global batch."""
    import tensorflow_transform as tft

    where = where if where is not None else placement()
    start = time.monotonic()
    keras.utils.set_random_seed(config.seed)
    tft_output = tft.TFTransformOutput(transform_dir)
    tasks = S.RawSchema.load(os.path.join(transform_dir, layout.SCHEMA_FILE)).task_names
    train = read_engagement(transformed_dir, tft_output, "train", tasks)
    evaluation = read_engagement(transformed_dir, tft_output, "eval", tasks, catalog=train)
    if not train.engaged:
        raise ValueError("the train split has no engaged (clicked) product: nothing to learn from")
    texts = None
    if config.encoder_preset == TINY:  # from scratch: a vocabulary of the catalog and queries
        texts = list(train.engaged) + train.product_texts
    with where.strategy.scope():
        backbone, tokenizer = load_encoder(config.encoder_preset, texts=texts, seed=config.seed)
    preprocessor = TextPreprocessor(tokenizer, config.query_length, config.product_length)
    with where.strategy.scope():
        encoder = TextEncoder(backbone, fine_tune_layers=config.fine_tune_layers)
        model = TwoTower(encoder, config.projection_dim)
    with tempfile.TemporaryDirectory(prefix="pretrain-cache-") as scratch:
        inputs = EncoderInputs(
            encoder,
            preprocessor,
            config.text_cache_dir or scratch,
            {
                "query": [q.encode() for q in (*train.engaged, *evaluation.engaged)],
                "product": [t.encode() for t in evaluation.product_texts],
            },
        )
        cache_seconds = time.monotonic() - start
        before = retrieval_metrics(model, inputs, evaluation, config)
        train_start = time.monotonic()
        history, lists_seen = _train(model, inputs, train, config, where.strategy)
        train_seconds = time.monotonic() - train_start
        after = retrieval_metrics(model, inputs, evaluation, config)

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
        "text_cache": inputs.cache_stats,
        "lists_per_second": round(lists_seen / max(train_seconds, 1e-9), 2),
        "seconds": round(time.monotonic() - start, 1),
        "cache_seconds": round(cache_seconds, 1),
    }
    with open(os.path.join(output_dir, INFO_FILE), "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2)
    return info


def _train(model: TwoTower, inputs: EncoderInputs, train: EngagementData, config, strategy):
    """The epochs; returns (mean loss per epoch, lists trained on)."""
    sampler = NegativeSampler(len(train.product_ids), config.ratio, seed=config.seed)
    rng = np.random.default_rng(config.seed)
    product_texts = [t.encode() for t in train.product_texts]
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        optimizer = _optimizer(model, config)
        optimizer.build(model.trainable_variables)
    # Its mean over a replica's queries, divided by the replicas (Keras scales a loss so
    # under a strategy): the replicas' gradients sum to those of the global batch's mean.
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)

    def replica_step(batch, target):
        with tf.GradientTape() as tape:
            queries = model.embed_queries(batch["query"], training=True)
            products = model.embed_products(batch["products"], training=True)
            if replicas > 1:  # every replica's products, in the global batch's order
                products = tf.distribute.get_replica_context().all_gather(products, axis=0)
            loss = loss_fn(target, model.score(queries, products, batch["mask"]))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    @tf.function(reduce_retracing=True)
    def step(batch, target):
        losses = strategy.run(replica_step, args=(batch, target))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    history, seen = [], 0
    for epoch in range(config.epochs):
        progress(
            f"epoch {epoch + 1}/{config.epochs}"
            + (f": last loss {history[-1]:.4f}" if history else "")
        )
        losses = []
        lists = list(training_lists(train, config, sampler, rng))
        for first in range(0, len(lists), config.queries_per_batch):
            chunk = lists[first : first + config.queries_per_batch]
            mask = batch_mask(
                chunk, [train.engaged[b[0]] for b in chunk], config.in_batch_negatives
            )
            target = np.zeros_like(mask)
            width = len(chunk[0][1])
            for i, b in enumerate(chunk):
                target[i, i * width : (i + 1) * width] = b[2]
            parts = []  # each replica's queries, their products, and their mask rows
            for rows in np.array_split(np.arange(len(chunk)), replicas):
                batch = {
                    "query": inputs.batch("query", [chunk[i][0].encode() for i in rows]),
                    "products": inputs.batch(
                        "product", [product_texts[p] for i in rows for p in chunk[i][1]]
                    ),
                    "mask": tf.constant(mask[rows]),
                }
                parts.append((batch, tf.constant(target[rows])))
            batch, targets = _per_replica(strategy, parts)
            losses.append(float(step(batch, targets)))
            seen += len(chunk)
        history.append(float(np.mean(losses)))
    return history, seen


def _per_replica(strategy, parts: list[tuple]) -> tuple:
    """Replica i's values are `parts[i]` (a global replica index: under several workers each
    builds the whole global batch and keeps its replicas' parts)."""
    return tuple(
        strategy.experimental_distribute_values_from_function(
            lambda context, k=k: parts[context.replica_id_in_sync_group][k]
        )
        for k in range(len(parts[0]))
    )


def load_projections(preset_dir: str) -> dict[str, np.ndarray] | None:
    """The pretrained projections of a preset written by `run_pretrain`, or None."""
    path = os.path.join(preset_dir, PROJECTIONS_FILE)
    if not os.path.exists(path):
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
