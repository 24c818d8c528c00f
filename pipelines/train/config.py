"""The training job's configuration: a YAML file (optional) overridden by command-line flags."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bottega.errors import ConfigError, describe_validation_error
from bottega.usecases.fraud.kinds import ModelKind

Imbalance = Literal["class_weights", "focal", "downsample"]


class TrainConfig(BaseModel):
    """Everything that decides what a training run does. Logged as MLflow params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelKind = "mlp"
    window: timedelta = Field(default=timedelta(days=14), description="Length of the window.")
    end: datetime | None = Field(
        default=None, description="End of the window (default: just after the newest transaction)."
    )
    labels_as_of: datetime | None = Field(
        default=None, description="Hide labels that arrived later (default: the run's start)."
    )
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    holdout_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    holdout: Literal["newest", "cards"] = Field(
        default="newest",
        description="newest: validate and hold out the newest rows; cards: hold out whole cards "
        "over the whole window (after drift, when the newest hours may not show the new regime).",
    )
    imbalance: Imbalance = "class_weights"
    keep_negatives: float = Field(default=0.2, gt=0, le=1, description="For downsample.")
    pos_weight: float | None = Field(
        default=5.0, gt=0, description="For class_weights (None: negatives / positives)."
    )
    focal_gamma: float = Field(default=2.0, ge=0)
    hidden: tuple[int, ...] = (32,)
    epochs: int = Field(default=30, ge=1)
    patience: int = Field(default=6, ge=1)
    batch_size: int = Field(default=512, ge=8)
    learning_rate: float | None = Field(default=None, gt=0, description="Default by model.")
    weight_decay: float = Field(default=1e-5, ge=0)
    seed: int = 0
    threads: int = Field(
        default=1,
        ge=1,
        description="Torch CPU threads. The fraud MLP is small: on a machine shared with the "
        "stack, more threads spin against the model server instead of helping.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    reference_rows: int = Field(default=5000, ge=10)
    shuffle_labels: bool = Field(
        default=False, description="Train on shuffled labels: a deliberately bad model, for tests."
    )

    @model_validator(mode="after")
    def _fractions(self) -> TrainConfig:
        if self.val_fraction + self.holdout_fraction >= 0.8:
            raise ValueError("validation and holdout leave too little to train on")
        return self

    @property
    def lr(self) -> float:
        """The learning rate, by model when not set."""
        return self.learning_rate or (3e-3 if self.model == "mlp" else 1e-2)

    def params(self) -> dict[str, str]:
        """The config as flat MLflow params."""
        return {k: str(v) for k, v in self.model_dump().items()}


def load_config(path: Path | None, **overrides: object) -> TrainConfig:
    """The config from ``path`` (YAML) with ``overrides`` (None values ignored) on top."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the training config {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the training config must be a mapping")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid training config: {describe_validation_error(exc)}") from None
