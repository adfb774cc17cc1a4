"""MLPR and the models the paper compares it with, as configurations of one builder.

XGBoost, the paper's reference point, is not a neural network; it lives in
model/xgboost_baseline.py and shares the data path and the evaluation.
"""

from __future__ import annotations

from model.config import RankerConfig

_NO_STAGES = dict(
    multi_gate_experts=False,
    specific_experts=False,
    attention_units=False,
    probability_transfer=False,
    loss_balancing="fixed",
)
_BOTTOM = (512, 256, 128)

ARCHITECTURES: dict[str, RankerConfig] = {
    # All five stages (the paper's model).
    "mlpr": RankerConfig(),
    # One MLP per task on the same features; nothing shared.
    "mlp_single": RankerConfig(**_NO_STAGES, separate_task_networks=True),
    # Shared bottom + one tower per task.
    "mlp_mtl": RankerConfig(**_NO_STAGES, shared_bottom_units=_BOTTOM),
    # ESM2: shared bottom, towers chained by probability transfer over the entire space.
    "esm2": RankerConfig(
        **{**_NO_STAGES, "probability_transfer": True}, shared_bottom_units=_BOTTOM
    ),
    # MMoE: shared experts, one gate per task.
    "mmoe": RankerConfig(**{**_NO_STAGES, "multi_gate_experts": True}),
    # PLE (one CGC level): task-specific and shared experts, customized gates.
    "ple": RankerConfig(
        **{**_NO_STAGES, "specific_experts": True}, num_shared_experts=2, num_specific_experts=2
    ),
    # AITM: shared bottom, towers with adaptive information transfer, calibration penalty.
    "aitm": RankerConfig(
        **{**_NO_STAGES, "attention_units": True},
        shared_bottom_units=_BOTTOM,
        calibration_weight=0.6,
    ),
    # DCN-V2 (stacked): a cross network of three layers, then a deep shared bottom, towers.
    "dcn_v2": RankerConfig(**_NO_STAGES, cross_layers=3, shared_bottom_units=_BOTTOM),
}


def architecture(name: str) -> RankerConfig:
    """The named configuration; a clear error lists the known names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}"
        ) from None
