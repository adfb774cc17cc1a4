"""The training run's configuration: one frozen dataclass built once from the component's
parameters; the plain code below takes plain values from it."""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from model.architectures import ARCHITECTURES
from model.architectures import architecture as architecture_config
from model.config import RankerConfig
from model.encoder import ALL_LAYERS
from model.presets import MINILM, TINY
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
    """One training run's settings. Its defaults are the library's (small, fast ones that
    tests build on); the train step and the benchmarks build theirs with `train_config`,
    which starts from the pipeline's defaults.

    Args:
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
    select_p_value: with the encoder's prior, the best trained epoch replaces the untrained
        model (the zero-shot ranking) only if it ranks the eval queries better at this
        one-sided paired p-value over the queries; else the untrained model is kept, so that
        a log too small to show a gain ships the encoder's own ranking. 1.0: the best epoch
        is kept whatever its margin.
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
    select_p_value: float = 0.05
    hang_seconds: float = 120.0

    def __post_init__(self) -> None:
        check_targets(self.targets)
        if not 0.0 < self.select_p_value <= 1.0:
            raise ValueError(f"select_p_value must be in (0, 1], got {self.select_p_value}")
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


# The train step's parameters, with their defaults in the pipeline (pipeline_parameters.py;
# tests/test_pipeline_parameters.py keeps the two equal): where every TrainConfig of the
# train step, the worker CLI, the local run's preflight and the benchmarks starts
# (`train_config`). The fields the pipeline does not set keep TrainConfig's own defaults.
STEP_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "architecture": "mlpr",
        "encoder_preset": MINILM,
        "fine_tune_layers": "0",
        "text_cache_dir": "",
        "max_epochs": 8,
        "batch_size": 128,
        "learning_rate": 0.001,
        "seed": 0,
        "precision": "auto",
        "loss_balancing": "",
        "listwise_tasks": "",
        "region_mask": False,
        "relevance_task": False,
        "select_p_value": 0.05,
    }
)

# The names train_config takes: the step's parameters, TrainConfig's fields (but `ranker`, which
# is built from the architecture and the RankerConfig fields named) and RankerConfig's fields.
TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - {"ranker"}
RANKER_FIELDS = frozenset(f.name for f in dataclasses.fields(RankerConfig))
SETTING_NAMES = frozenset(STEP_DEFAULTS) | TRAIN_FIELDS | RANKER_FIELDS


def train_config(**changes: Any) -> TrainConfig:
    """The train step's TrainConfig as the pipeline builds it with its default parameters,
    with only the named `changes`: what the component, the worker CLI, the local run's
    preflight and every benchmark build, so that a run differs from the pipeline's only
    where it says.

    A change names a train step parameter as the pipeline spells it (STEP_DEFAULTS:
    `fine_tune_layers` "0", "2" or "all", or a number; `text_cache_dir` "" for a cache of this
    run only; `loss_balancing` "" for the architecture's own; `listwise_tasks`
    comma-separated, or a tuple; `region_mask` and `relevance_task` False for the
    architecture's own), any other TrainConfig field (`targets`, `select_on`,
    `encoder_learning_rate`...), or any RankerConfig field, applied to the architecture's
    RankerConfig (ablations: `position_buckets=20`, `encoder_prior=False`...).

    Raises ValueError naming an unknown name, and a neural network's setting given to
    "xgboost".

    Examples:
        >>> train_config() == train_config(architecture="mlpr", fine_tune_layers=0)
        True
        >>> train_config(max_epochs=1, encoder_preset="tiny").ranker_config.fine_tune_layers
        0
    """
    unknown = sorted(set(changes) - SETTING_NAMES)
    if unknown:
        raise ValueError(_unknown_settings(unknown))
    settings = {**STEP_DEFAULTS, **changes}
    architecture = settings.pop("architecture")
    if architecture != XGBOOST and architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of "
            f"{sorted([*ARCHITECTURES, XGBOOST])}"
        )
    ranker_changes = {k: settings.pop(k) for k in list(settings) if k in RANKER_FIELDS}
    listwise = ranker_changes["listwise_tasks"]
    if isinstance(listwise, str):
        listwise = [t.strip() for t in listwise.split(",") if t.strip()]
    ranker_changes["listwise_tasks"] = tuple(listwise)
    # The step's "unset": the architecture's own.
    for name in ("loss_balancing", "listwise_tasks", "region_mask", "relevance_task"):
        if not ranker_changes[name]:
            del ranker_changes[name]
    ranker = None
    if architecture == XGBOOST:
        neural = [k for k in ranker_changes if k != "fine_tune_layers"]
        if neural:
            raise ValueError(
                f"{' and '.join(neural)} change a neural network; xgboost is none: leave them unset"
            )
    else:
        ranker = architecture_config(architecture).replace(**ranker_changes)
    settings["text_cache_dir"] = settings["text_cache_dir"] or None
    return TrainConfig(architecture=architecture, ranker=ranker, **settings)


def settings_of(config: TrainConfig) -> dict[str, Any]:
    """The run's settings by the names train_config takes: TrainConfig's fields, and its
    ranker's RankerConfig fields (none for "xgboost")."""
    settings = {name: getattr(config, name) for name in sorted(TRAIN_FIELDS)}
    if config.architecture != XGBOOST:
        settings.update(config.ranker_config.to_dict())
    return settings


def changed_settings(config: TrainConfig, base: TrainConfig | None = None) -> dict[str, tuple]:
    """{name: (base's value, config's value)} of the settings in which `config` differs from
    `base` (default: train_config(), the pipeline's), over the names both have."""
    ours, theirs = settings_of(config), settings_of(base or train_config())
    return {n: (theirs[n], ours[n]) for n in ours if n in theirs and ours[n] != theirs[n]}


def _unknown_settings(unknown: list[str]) -> str:
    """The error of names that train_config does not take, with the closest known ones."""
    hints = [
        f"{close[0]!r} for {name!r}"
        for name in unknown
        if (close := difflib.get_close_matches(name, sorted(SETTING_NAMES), n=1))
    ]
    message = f"unknown train setting(s) {unknown}"
    if hints:
        message += f" (did you mean {', '.join(hints)}?)"
    if "ranker" in unknown:
        message += "; name the RankerConfig fields to change (e.g. position_buckets=20)"
    return (
        f"{message}; give a train step parameter ({', '.join(STEP_DEFAULTS)}), another "
        "TrainConfig field or a RankerConfig field"
    )
