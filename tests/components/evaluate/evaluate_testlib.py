"""Helpers of the evaluate tests: SavedModels of the trained model's contract, a synthetic test
split with a known signal, the evaluate component called with every output, and reports built
from scored splits without any model."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import tensorflow as tf
from kfp import dsl

from components.evaluate.analysis import analyse, paired_ndcg
from components.evaluate.component import evaluate
from components.evaluate.gate import decide
from components.evaluate.gate_config import GateConfig
from components.evaluate.kfp_outputs import CLASSIFICATION_SLOTS, slot_name
from components.evaluate.report import EvaluationReport
from components.evaluate.scoring import ScoredSplit, compute_metrics
from components.ingest.demo_data import FAVORITE_FUNNEL, FAVORITES
from contract import layout
from contract import schema as S

SIGNAL = S.RankingFeature("lexical_score")
DECOY = S.RankingFeature("decoy")
# A funnel with a stage between click and add-to-cart, its count column "favorites": the
# demo shop's four-stage variant.
FOUR_TASKS = FAVORITE_FUNNEL


def save_scorer(
    path: str,
    transform,
    features=("lexical_score",),
    with_signature=True,
    tasks=S.DEFAULT_TASKS,
) -> str:
    """A SavedModel with the trained model's `score_examples` signature.

    `transform` maps the parsed float features (in the order of `features`) to the first
    task's probability; the k-th task's (from 0) is that times 0.5**k (atc = click/2,
    purchase = click/4 in the default funnel), and the score equals the last task's.
    """

    class Scorer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def score_examples(self, examples):
            spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in features}
            parsed = tf.io.parse_example(examples, spec)
            x = transform(*(parsed[name] for name in features))
            outputs = {task: x * 0.5**k for k, task in enumerate(tasks)}
            return {**outputs, "score": outputs[tasks[-1]]}

    module = Scorer()
    signatures = {"score_examples": module.score_examples} if with_signature else {}
    tf.saved_model.save(module, path, signatures=signatures)
    return path


def ranking_rows(queries: int, products: int, seed: int) -> list[dict]:
    """Rows whose engagement follows lexical_score (with noise); decoy is unrelated noise.

    Impressions vary from 6 to 205, so the impression groups differ.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(queries):
        for p in range(products):
            lexical, decoy = float(rng.random()), float(rng.random())
            noise = rng.normal(0.0, 0.15, size=3)
            clicks = int(lexical + noise[0] > 0.45) * int(rng.integers(1, 4))
            carts = int(clicks > 0 and lexical + noise[1] > 0.55)
            purchases = int(carts > 0 and lexical + noise[2] > 0.6)
            rows.append(
                {
                    S.QUERY: f"query {q}",
                    S.PRODUCT_ID: f"q{q}-p{p}",
                    S.TITLE: f"product {p}",
                    SIGNAL.name: lexical,
                    DECOY.name: decoy,
                    S.IMPRESSIONS: int(rng.integers(6, 206)),
                    S.CLICKS: clicks,
                    S.ADD_TO_CART: carts,
                    S.PURCHASES: purchases,
                    # Between clicks and add-to-carts: a clicked pair with a strong signal.
                    FAVORITES: carts + int(clicks > carts and lexical > 0.5),
                }
            )
    return rows


def install_champion(saved_model_dir: str, model_base: str, version: int = 1) -> str:
    """Copy a SavedModel into the serving repository, as a push would."""
    target = os.path.join(model_base, "mlpr", str(version))
    shutil.copytree(saved_model_dir, target)
    return target


class EvaluateRun:
    """The evaluate component called directly with every output artifact under `out`."""

    def __init__(self, dataset: str, model_dir: str, out: str, model_base: str, **params):
        self.metrics = dsl.Metrics(uri=os.path.join(out, "metrics"))
        self.classification = [
            dsl.ClassificationMetrics(uri=os.path.join(out, slot_name(k)))
            for k in range(1, CLASSIFICATION_SLOTS + 1)
        ]
        self.report = dsl.HTML(uri=os.path.join(out, "report"))
        self.blessing = dsl.Artifact(uri=os.path.join(out, "blessing"))
        self.result = evaluate.python_func(
            examples=dsl.Dataset(uri=dataset),
            model=dsl.Model(uri=model_dir),
            metrics=self.metrics,
            **{slot_name(k + 1): slot for k, slot in enumerate(self.classification)},
            report=self.report,
            blessing=self.blessing,
            model_base=model_base,
            **params,
        )

    def json(self, name: str) -> dict:
        with open(os.path.join(self.blessing.path, name), encoding="utf-8") as f:
            return json.load(f)

    @property
    def verdict(self) -> dict:
        return self.json(layout.BLESSING_FILE)

    @property
    def html(self) -> str:
        with open(self.report.path, encoding="utf-8") as f:
            return f.read()


def scored_split(rows: list[dict], transform, tasks=S.DEFAULT_FUNNEL) -> ScoredSplit:
    """A ScoredSplit of `ranking_rows` for the funnel `tasks` as if a model predicted the
    first task = transform(lexical, decoy) and the k-th (from 0) that times 0.5**k (click,
    click/2, click/4 in the default funnel), the score the last's (no SavedModel involved)."""
    lexical = np.array([r[SIGNAL.name] for r in rows])
    decoy = np.array([r[DECOY.name] for r in rows])
    first = np.asarray(transform(lexical, decoy), dtype=np.float64)
    predictions = {t.name: first * 0.5**k for k, t in enumerate(tasks)}
    return ScoredSplit(
        query=np.array([r[S.QUERY] for r in rows], dtype=object),
        product_id=np.array([r[S.PRODUCT_ID] for r in rows], dtype=object),
        impressions=np.array([r[S.IMPRESSIONS] for r in rows]),
        labels={t.name: t.label(np.array([r[t.count] for r in rows])) for t in tasks},
        predictions=predictions,
        score=predictions[tasks[-1].name],
    )


def synthetic_report(candidate: ScoredSplit, champion: ScoredSplit | None, **gate):
    """The EvaluationReport the evaluate step would write for these two scored splits."""
    config = GateConfig(**{"floors": {"auc": 0.6, "ndcg@5": 0.0}, **gate})
    config = config.for_tasks(candidate.tasks)
    candidate_metrics = compute_metrics(candidate)
    champion_metrics = None if champion is None else compute_metrics(champion)
    paired = None if champion is None else paired_ndcg(candidate, champion, config.confidence)
    blessing = decide(
        candidate_metrics,
        champion_metrics,
        config,
        paired,
        champion_uri=None if champion is None else "/serving/mlpr/1",
        repository="/serving/mlpr",
    )
    return EvaluationReport(
        split="/data/test/data-*.tfrecord.gz",
        candidate_uri="/runs/<candidate>/saved_model",
        champion_uri=None if champion is None else "/serving/mlpr/1",
        candidate_metrics=candidate_metrics,
        champion_metrics=champion_metrics,
        candidate=analyse(candidate),
        champion=None if champion is None else analyse(champion),
        blessing=blessing.to_dict(),
    )
