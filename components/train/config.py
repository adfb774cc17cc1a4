"""The training run's configuration: one frozen dataclass built once from the component's
parameters; the plain code below takes plain values from it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from model.architectures import ARCHITECTURES
from model.architectures import architecture as architecture_config
from model.config import RankerConfig
from model.encoder import ALL_LAYERS
from model.presets import TINY
from model.xgboost_baseline import XGBoostConfig

XGBOOST = "xgboost"

# What each task trains on: "rate", its count per impression (a soft label: an aggregated
# pair stands for its impressions, as the paper trains on impressions); "any", whether the
# count is above 0 (the binary label that evaluation uses).
TARGETS = ("rate", "any")

# What chooses the epoch the train step keeps (TrainConfig.select_on).
SELECT_ON = ("ndcg@5", "val_loss")

# The precisions training can compute in (TrainConfig.precision; distribute.resolve_precision).
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def check_targets(targets: str) -> str:
    if targets not in TARGETS:
        raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
    return targets


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Args:
    architecture: "mlpr", a neural baseline of model/architectures.py, or "xgboost".
    encoder_preset: see model/presets.py ("tiny", "all-minilm-l6-v2", a directory, a hub name).
    query_length: packed query length in tokens ([CLS] and [SEP] included).
    product_length: packed product-text length in tokens.
    batch_size: examples per step.
    max_epochs: upper bound on epochs; early stopping (`select_on`) usually stops sooner.
    learning_rate: AdamW learning rate.
    encoder_learning_rate: the learning rate of the text encoder's trained layers (at most
        `learning_rate`; the usual BERT practice is 1e-5 to 5e-5); None: `learning_rate`.
    early_stopping_patience: epochs without improvement of `select_on` before stopping.
    score_weights: weights of the tasks' probabilities in the exported ranking score, one per
        task in funnel order (empty: 1 each; the default funnel's click, atc, purchase).
    seed: seeds weight initialisation, shuffling and dropout.
    max_vocabulary_texts: texts sampled from the training split to learn a "tiny" vocabulary.
    ranker: overrides the named architecture's RankerConfig (ablations); None: use it.
    xgboost: settings of the "xgboost" baseline.
    targets: what each task trains on: "rate", its count per impression as a soft label (an
        aggregated pair stands for all its impressions, as the paper trains on impressions);
        "any", whether the count is above 0 (evaluation's binary label). With tens of
        impressions per pair, "any" saturates: nearly every relevant product was clicked at
        least once, so the binary label hardly tells good from best.
    text_cache_dir: where the frozen encoder's outputs are cached and reused across runs
        (components/train/text_cache.py); None: a temporary folder, for this run only.
    catalog_terms: the serving export's catalog also holds each product's first-layer terms
        of the scorer (about 2,000 floats per product with MLPR's default experts), so
        `rank_precomputed` computes only the query's and the pair's; False: psi(i) and the
        categorical ids only (256 floats and 4 ids per product), for a catalog too large.
    select_on: what picks the epoch the model keeps and stops training
        (components/train/selection.py): "ndcg@5", the eval split's NDCG@5 within each
        query, scored before training too (epoch 0: the untrained model, which with the
        encoder's prior ranks as the encoder's zero-shot cosine); "val_loss", the eval loss.
    select_task: the task whose NDCG@5 selects; "": the mean over the funnel's tasks.
    relevance_encoder: the pretrained text encoder preset whose query-title similarity goes
        into the relevance task's label (RankerConfig.relevance_task): the label does not
        follow the ranker's own encoder.
    precision: the Keras dtype policy training computes under: "float32", "mixed_bfloat16",
        "mixed_float16", or "auto" (mixed_bfloat16 on GPUs of compute capability 8.0 and up,
        mixed_float16 on older GPUs, float32 on CPUs). Weights, the heads' sigmoids and the
        loss stay float32, and the exported model computes in float32.
    backup_dir: where the training state is written after every epoch and read back when
        training starts again after a kill (components/train/backup.py): a folder that a
        retry of the same task finds again; removed once the model is exported. None: no
        backup. The frozen encoder's outputs are cached there too when `text_cache_dir` is
        None. With several workers it must be a folder they all share: every worker
        resumes from the chief's backup there, and keeps its heartbeat there.
    hang_seconds: with several workers (and a `backup_dir`), how long training may go
        without any process moving (a step begun or finished, train or eval) or without a
        process's heartbeat before the chief fails the job, naming the process
        (components/train/watchdog.py); it fails within `hang_seconds` plus twice its
        heartbeat interval (hang_seconds / 8, within 0.5 to 5 s). Longer than the slowest
        step or epoch end (the first train step, which builds the graph, is not timed) and
        than the shared volume's caching delay.
    """

    architecture: str = "mlpr"
    encoder_preset: str = "tiny"
    query_length: int = 16
    product_length: int = 48
    batch_size: int = 128
    max_epochs: int = 8
    learning_rate: float = 1e-3
    encoder_learning_rate: float | None = None
    early_stopping_patience: int = 2
    score_weights: tuple[float, ...] = ()
    seed: int = 0
    max_vocabulary_texts: int = 200_000
    ranker: RankerConfig | None = None
    xgboost: XGBoostConfig = XGBoostConfig()
    text_cache_dir: str | None = None
    targets: str = "rate"
    catalog_terms: bool = True
    precision: str = "auto"
    relevance_encoder: str = "all-minilm-l6-v2"
    select_on: str = "ndcg@5"
    backup_dir: str | None = None
    select_task: str = ""
    hang_seconds: float = 120.0

    def __post_init__(self) -> None:
        check_targets(self.targets)
        if self.select_on not in SELECT_ON:
            raise ValueError(f"select_on must be one of {SELECT_ON}, got {self.select_on!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("batch_size", "max_epochs", "query_length", "product_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hang_seconds <= 0:
            raise ValueError(f"hang_seconds must be positive, got {self.hang_seconds}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.encoder_learning_rate is not None and not (
            0 < self.encoder_learning_rate <= self.learning_rate
        ):
            raise ValueError(
                f"encoder_learning_rate must be in (0, learning_rate={self.learning_rate}], "
                f"got {self.encoder_learning_rate}"
            )
        if self.score_weights and min(self.score_weights) < 0:
            raise ValueError(f"score_weights must not be negative, got {self.score_weights}")

        ranker = self.ranker
        if ranker is not None and ranker.relevance_task and ranker.fine_tune_layers == ALL_LAYERS:
            raise ValueError(
                "the relevance task trains with the encoder's outputs cached (fine_tune_layers 0 "
                "or a number of top layers), not with fine_tune_layers 'all'"
            )
        if ranker is not None and ranker.listwise_tasks and ranker.fine_tune_layers == ALL_LAYERS:
            raise ValueError(
                "listwise tasks train with the encoder's outputs cached (fine_tune_layers 0 or a "
                "number of top layers), not with fine_tune_layers 'all'"
            )
        if self.architecture != XGBOOST and self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; choose one of "
                f"{sorted([*ARCHITECTURES, XGBOOST])}"
            )

    @property
    def ranker_config(self) -> RankerConfig:
        return self.ranker if self.ranker is not None else architecture_config(self.architecture)

    def for_tasks(self, tasks: Sequence[str]) -> TrainConfig:
        """This configuration for a log whose funnel has `tasks` (its schema's `task_names`):
        the ranker builds one tower per task, and the score weighs each task (1 each unless
        `score_weights` says otherwise, one weight per task). With the random-weight "tiny"
        encoder, the ranker keeps no encoder prior (RankerConfig.encoder_prior)."""
        tasks = tuple(tasks)
        weights = tuple(self.score_weights) or (1.0,) * len(tasks)
        if len(weights) != len(tasks):
            raise ValueError(
                f"score_weights needs one weight per task {list(tasks)}, got {list(weights)}"
            )
        ranker = None
        if self.architecture != XGBOOST:
            ranker = self.ranker_config.replace(tasks=tasks)
            ranker.check_listwise_tasks()
            if self.encoder_preset == TINY:
                # Random weights: its cosine is noise, no prior worth keeping.
                ranker = ranker.replace(encoder_prior=False)
        return dataclasses.replace(self, ranker=ranker, score_weights=weights)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def train_config(
    architecture: str = "mlpr",
    fine_tune_layers: int | str = ALL_LAYERS,
    ranker_changes: dict | None = None,
    **settings,
) -> TrainConfig:
    """The TrainConfig of a named architecture with its encoder's `fine_tune_layers` and any
    other RankerConfig changes (ablations), and the other TrainConfig `settings`: what the
    train step and the benchmarks build from their parameters, in one place."""
    ranker = None
    if architecture != XGBOOST:
        changes = {"fine_tune_layers": fine_tune_layers, **(ranker_changes or {})}
        ranker = architecture_config(architecture).replace(**changes)
    return TrainConfig(architecture=architecture, ranker=ranker, **settings)
