"""The ranker's configuration: one frozen dataclass, converted once at the edge.

Every stage of MLPR is a switch, so the paper's ablations and most baselines are
configurations of the same builder (see model/architectures.py).
"""

from __future__ import annotations

import dataclasses

from contract import schema as S
from model.encoder import ALL_LAYERS, check_fine_tune_layers
from model.interactions import INTERACTIONS
from model.loss_balancing import BALANCING


@dataclasses.dataclass(frozen=True)
class RankerConfig:
    """Architecture of the multi-task ranker.

    Args:
        tasks: the tasks in funnel order, one tower and one probability output each (the
            schema's `task_names`; the train step sets them from the data). Attention units
            and probability transfer chain each task to the one before.
        projection_dim: width of the query and product projections phi(q), psi(i).
        pooling: how token vectors become one text vector ("mean" or "cls").
        fine_tune_layers: how much of the text encoder trains with the ranker: "all" (full
            fine-tuning), or the top k transformer layers (0: frozen). The frozen part's
            outputs are computed once per distinct text and cached (components/train).
        interactions: which of cosine / hadamard / concat feed the ranker (stage 1).
        tied_projection_init: start phi and psi from the same random projection, so that
            the cosine interaction starts as the text encoder's own cosine similarity of
            the query and the product (a pretrained encoder's zero-shot ranking signal)
            instead of noise; they train apart from there.
        encoder_prior: keep the text encoder's prior (model/encoder_prior.py): the cosine
            of the raw encoder vectors of the query and the product is skipped to every
            task's logit, whose correction by the tower starts at zero, so that an untrained
            ranker ranks each query's products exactly as the encoder's zero-shot cosine
            does and training adds to it.
        prior_scale: the prior's weight on each task's logit at initialisation (it trains).
        categorical_embedding_dim: embedding width of each categorical product field.
        dropout: dropout inside every MLP (experts, bottoms, towers).
        cross_layers: DCN-V2's cross network on the features, that many cross layers
            (model/cross_network.py), before the shared bottom or experts; 0: none.
        separate_task_networks: one independent MLP per task, nothing shared (MLP_Single).
        shared_bottom_units: a shared-bottom MLP (MLP_MTL, ESM2, AITM); empty: none.
        multi_gate_experts: stage 2, shared experts mixed by one softmax gate per task (MMoE).
        specific_experts: stage 3, per-task experts plus shared experts, customized gates (PLE).
        num_shared_experts: experts shared by all tasks (stages 2 and 3).
        num_specific_experts: experts of each task (stage 3).
        expert_units: each expert's MLP widths (also the MLP_Single networks).
        tower_units: each task tower's MLP widths.
        attention_units: stage 4, towers pass information from task k-1 to task k.
        probability_transfer: stage 5, chain conditional funnel probabilities.
        loss_balancing: how the task losses are weighted into one (model/loss_balancing.py):
            "uncertainty" (learned, the paper's eq. 10), "gradnorm" (weights that equalise the
            tasks' training rates), "dwa" (Dynamic Weight Average) or "fixed".
        task_weights: the constant task weights of "fixed", one per task (empty: 1 each).
        gradnorm_alpha: GradNorm's alpha: how strongly slower-training tasks are pulled up.
        dwa_temperature: Dynamic Weight Average's temperature (larger: weights closer to 1).
        calibration_weight: AITM's calibration penalty on out-of-funnel-order predictions.
        relevance_task: one more task outside the funnel, the engagement relevance label
            (components/transform/relevance.py: position-debiased click rate and the
            query-title similarity of a pretrained encoder, scaled to [0, 1]), with its own
            gate, tower and output `relevance`; not chained to the funnel's tasks. The train
            step computes the label; serving does not output it.
        region_mask: one model for several markets: a mask generated from the market
            (model/region_mask.py) on each task's input and each tower's output, so that
            markets can differ in what they weigh; with any architecture. A log without
            markets has one market, and the masks learn nothing a bias would not.
        position_buckets: position-bias-aware training: learn how often each logged display
            position (1 to this many, deeper ones share the last) is examined and train the
            predictions times it, so that the ranker learns relevance rather than where the old
            ranking put a product (model/position_bias.py). Serving never sees positions.
            0 disables it; rows logged without a position (0) are unaffected.
        listwise_tasks: tasks trained with the listwise softmax loss over each query's
            products (TF-Ranking's softmax cross-entropy; model/losses.py) instead of the
            paper's pointwise cross-entropy; the rest stay pointwise. Their probabilities then
            rank well but are no longer calibrated rates.
    """

    tasks: tuple[str, ...] = S.DEFAULT_TASKS
    projection_dim: int = 256
    pooling: str = "mean"
    fine_tune_layers: int | str = ALL_LAYERS
    interactions: tuple[str, ...] = INTERACTIONS
    tied_projection_init: bool = True
    encoder_prior: bool = True
    prior_scale: float = 1.0
    categorical_embedding_dim: int = 8
    dropout: float = 0.2
    cross_layers: int = 0
    separate_task_networks: bool = False
    shared_bottom_units: tuple[int, ...] = ()
    multi_gate_experts: bool = True
    specific_experts: bool = True
    num_shared_experts: int = 4
    num_specific_experts: int = 1
    expert_units: tuple[int, ...] = (512, 256, 128)
    tower_units: tuple[int, ...] = (64,)
    attention_units: bool = True
    probability_transfer: bool = True
    loss_balancing: str = "uncertainty"
    task_weights: tuple[float, ...] = ()
    gradnorm_alpha: float = 1.5
    dwa_temperature: float = 2.0
    calibration_weight: float = 0.0
    relevance_task: bool = False
    region_mask: bool = False
    position_buckets: int = 0
    listwise_tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "fine_tune_layers", check_fine_tune_layers(self.fine_tune_layers))
        if self.projection_dim <= 0 or self.categorical_embedding_dim <= 0:
            raise ValueError(
                "projection_dim and categorical_embedding_dim must be positive, got "
                f"{self.projection_dim} and {self.categorical_embedding_dim}"
            )
        sharing = (self.shared_bottom_units, self.multi_gate_experts, self.specific_experts)
        if self.separate_task_networks and any(sharing):
            raise ValueError(
                "separate_task_networks shares nothing: it excludes shared_bottom_units, "
                "multi_gate_experts and specific_experts"
            )
        if self.shared_bottom_units and self.multi_gate_experts:
            raise ValueError("choose a shared bottom or multi-gate experts, not both")
        if (self.multi_gate_experts or self.specific_experts) and self.num_shared_experts < 1:
            raise ValueError(f"num_shared_experts must be >= 1, got {self.num_shared_experts}")
        if self.cross_layers < 0:
            raise ValueError(f"cross_layers must be >= 0, got {self.cross_layers}")
        if self.position_buckets < 0:
            raise ValueError(f"position_buckets must be >= 0, got {self.position_buckets}")
        if self.loss_balancing not in BALANCING:
            raise ValueError(
                f"loss_balancing must be one of {BALANCING}, got {self.loss_balancing!r}"
            )
        if self.task_weights and self.loss_balancing != "fixed":
            raise ValueError(
                f"task_weights are the weights of loss_balancing 'fixed', not "
                f"{self.loss_balancing!r}"
            )
        if self.gradnorm_alpha < 0 or self.dwa_temperature <= 0:
            raise ValueError(
                f"gradnorm_alpha must be >= 0 and dwa_temperature > 0, got "
                f"{self.gradnorm_alpha} and {self.dwa_temperature}"
            )
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be distinct names, at least one, got {self.tasks}")
        if not self.expert_units or not self.tower_units:
            raise ValueError("expert_units and tower_units must not be empty")

    def check_listwise_tasks(self) -> None:
        """listwise_tasks must be distinct tasks of this configuration (checked once the
        tasks are the log's: TrainConfig.for_tasks)."""
        known = (*self.tasks, *((S.RELEVANCE_TASK,) if self.relevance_task else ()))
        unknown = [t for t in self.listwise_tasks if t not in known]
        if unknown or len(set(self.listwise_tasks)) != len(self.listwise_tasks):
            raise ValueError(
                f"listwise_tasks must be distinct tasks of the log, {list(known)}; got "
                f"{list(self.listwise_tasks)}"
            )

    def replace(self, **changes) -> RankerConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RankerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        data = dict(data)
        if "uncertainty_loss" in data and "loss_balancing" not in data:
            # The setting of configurations saved before `loss_balancing`.
            data["loss_balancing"] = "uncertainty" if data.pop("uncertainty_loss") else "fixed"
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ranker config keys: {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)
