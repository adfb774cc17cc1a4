"""The ranker's configuration: one frozen dataclass, converted once at the edge."""

from __future__ import annotations

import dataclasses

from model.interactions import INTERACTIONS


@dataclasses.dataclass(frozen=True)
class RankerConfig:
    """Architecture of the multi-task ranker.

    Args:
        projection_dim: width of the query and product projections phi(q), psi(i).
        pooling: how token vectors become one text vector ("mean" or "cls").
        fine_tune_encoder: train the text backbone with the ranker (False: frozen).
        interactions: which of cosine / hadamard / concat feed the ranker.
        categorical_embedding_dim: embedding width of each categorical product field.
        bottom_units: the shared-bottom MLP.
        tower_units: each task tower's MLP (before its one-unit sigmoid head).
        dropout: dropout after every MLP block.
        probability_transfer: towers predict conditional funnel probabilities that are chained
            into P(click), P(click, atc), P(click, atc, purchase); otherwise each tower predicts
            its task directly.
    """

    projection_dim: int = 256
    pooling: str = "mean"
    fine_tune_encoder: bool = True
    interactions: tuple[str, ...] = INTERACTIONS
    categorical_embedding_dim: int = 8
    bottom_units: tuple[int, ...] = (256, 128)
    tower_units: tuple[int, ...] = (64,)
    dropout: float = 0.2
    probability_transfer: bool = True

    def __post_init__(self) -> None:
        if self.projection_dim <= 0 or self.categorical_embedding_dim <= 0:
            raise ValueError(
                "projection_dim and categorical_embedding_dim must be positive, got "
                f"{self.projection_dim} and {self.categorical_embedding_dim}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RankerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ranker config keys: {sorted(unknown)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)
