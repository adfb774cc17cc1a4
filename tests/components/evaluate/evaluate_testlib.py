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
from components.evaluate.report import EvaluationReport
from components.evaluate.scoring import ScoredSplit, compute_metrics
from contract import layout
from contract import schema as S

SIGNAL = S.RankingFeature("lexical_score")
DECOY = S.RankingFeature("decoy")


def save_scorer(path: str, transform, features=("lexical_score",), with_signature=True) -> str:
    """A SavedModel with the trained model's `score_examples` signature.

    `transform` maps the parsed float features (in the order of `features`) to the click
    probability; atc and purchase are click/2 and click/4, the score equals purchase.
    """

    class Scorer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def score_examples(self, examples):
            spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in features}
            parsed = tf.io.parse_example(examples, spec)
            x = transform(*(parsed[name] for name in features))
            click, atc, purchase = x, x * 0.5, x * 0.25
            return {"click": click, "atc": atc, "purchase": purchase, "score": purchase}

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
        self.classification = {
            task: dsl.ClassificationMetrics(uri=os.path.join(out, f"{task}_classification"))
            for task in S.TASKS
        }
        self.report = dsl.HTML(uri=os.path.join(out, "report"))
        self.blessing = dsl.Artifact(uri=os.path.join(out, "blessing"))
        self.result = evaluate.python_func(
            examples=dsl.Dataset(uri=dataset),
            model=dsl.Model(uri=model_dir),
            metrics=self.metrics,
            click_classification=self.classification["click"],
            atc_classification=self.classification["atc"],
            purchase_classification=self.classification["purchase"],
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


def scored_split(rows: list[dict], transform) -> ScoredSplit:
    """A ScoredSplit of `ranking_rows` as if a model predicted click = transform(lexical,
    decoy), atc = click/2, purchase = click/4 (no SavedModel involved)."""
    lexical = np.array([r[SIGNAL.name] for r in rows])
    decoy = np.array([r[DECOY.name] for r in rows])
    click = np.asarray(transform(lexical, decoy), dtype=np.float64)
    return ScoredSplit(
        query=np.array([r[S.QUERY] for r in rows], dtype=object),
        product_id=np.array([r[S.PRODUCT_ID] for r in rows], dtype=object),
        impressions=np.array([r[S.IMPRESSIONS] for r in rows]),
        labels={t: np.array([S.label_of(t, r) for r in rows]) for t in S.TASKS},
        predictions={"click": click, "atc": click / 2, "purchase": click / 4},
        score=click / 4,
    )


def synthetic_report(candidate: ScoredSplit, champion: ScoredSplit | None, **gate):
    """The EvaluationReport the evaluate step would write for these two scored splits."""
    config = GateConfig(**{"floors": {"auc": 0.6, "ndcg@5": 0.0}, **gate})
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
