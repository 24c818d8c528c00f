"""Settings of the trainer process (``BOTTEGA_RETRAIN__*`` for its own options)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from bottega.settings import BottegaSettings
from bottega.usecases.fraud.scenario import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class RetrainOptions(BaseModel):
    """What a retraining run does, and how often one may run."""

    model_config = ConfigDict(extra="forbid")

    window: Duration = Field(
        default=timedelta(days=4),
        description="Training window, ending at the newest transaction in the feature store "
        "(simulated time): recent enough to hold the drifted data, long enough to hold frauds "
        "enough to learn from (docs/monitoring.md, 'The retraining window').",
    )
    model: Literal["mlp", "logreg", "rules"] = "mlp"
    holdout: Literal["newest", "cards"] = Field(
        default="cards",
        description="The challenger's holdout, on which it and the champion are compared: whole "
        "cards over the window, so that it spans the drifted hours (see pipelines/train/data.py).",
    )
    epochs: int | None = Field(default=None, ge=1, description="Default: the training config's.")
    cooldown_s: float = Field(
        default=300.0, ge=0, description="No new run for this long after a run ends."
    )
    warm_workers: int = Field(
        default=2,
        ge=0,
        le=4,
        description="Job processes kept started with the jobs' code imported (one for training, "
        "one for promotion), so a retraining does not wait about 10 s per job (40 s beside a "
        "replay) for torch, MLflow and Feast to import. Each holds about 550 MB while it waits. "
        "0: each job starts cold.",
    )
    max_attempts: int = Field(default=3, ge=1, description="Attempts of one run, retries included.")
    backoff_initial_s: float = Field(default=30.0, gt=0, description="Wait before the 1st retry.")
    backoff_max_s: float = Field(default=600.0, gt=0, description="Longest wait between retries.")
    job_timeout_s: float = Field(
        default=1800.0, gt=0, description="A training or promotion job is killed after this."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body the API reads."
    )
    history_file: Path | None = Field(
        default=None, description="The run history (JSON lines); default <home>/trainer/runs.jsonl."
    )


class TrainerSettings(BottegaSettings):
    """Settings of ``python -m services.trainer``."""

    retrain: RetrainOptions = Field(default_factory=RetrainOptions)

    @property
    def history_path(self) -> Path:
        """Where the run history is kept."""
        return self.retrain.history_file or self.home / "trainer" / "runs.jsonl"
