"""Settings of the model server (``BOTTEGA_SERVE__*`` for its own options)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bottega.settings import BottegaSettings

Device = Literal["auto", "cpu", "cuda"]


class ServeOptions(BaseModel):
    """How the model server scores, swaps models, shadows and logs."""

    model_config = ConfigDict(extra="forbid")

    usecase: Literal["fraud"] = "fraud"
    workers: int = Field(
        default=2, ge=1, description="BentoML worker processes (2 measured best on 2 cores)."
    )
    device: Device = Field(
        default="auto",
        description="cuda, cpu, or auto: CUDA when torch sees a GPU, else the CPU.",
    )
    torch_threads: int = Field(
        default=1,
        ge=1,
        description="Torch threads per worker. One row's model is a few small matrix products: "
        "more threads only spin against the other workers on the same cores.",
    )
    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="A score at or above it is declined as fraud."
    )
    poll_interval_s: float = Field(
        default=5.0, gt=0, description="How often each worker reads the aliases from MLflow."
    )
    access_log: bool = Field(
        default=False, description="Log a line per request (uvicorn's access log)."
    )
    trace_requests: bool = Field(
        default=False,
        description="Open an OpenTelemetry span per request. BentoML opens one even with no "
        "tracing exporter configured; off, every route is excluded from its tracing.",
    )
    shadow: bool = Field(default=True, description="Score the challenger off the request path.")
    shadow_queue: int = Field(default=1000, ge=1, description="Pending shadow scores, at most.")
    log_buffer: int = Field(
        default=10_000,
        ge=1,
        description="Predictions queued and not yet delivered, at most (librdkafka's queue).",
    )
    prediction_journal: bool = Field(
        default=True,
        description="Journal each prediction on disk before it is queued for Kafka, so that a "
        "killed worker's unsent predictions are published by the next one (<home>/serving/"
        "journal).",
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Request body limit.")
    max_batch: int = Field(default=256, ge=1, description="Transactions per /predict_batch.")
    model_cache_dir: Path | None = Field(
        default=None, description="Where loaded models are cached; default <home>/serving/models."
    )


class ServingSettings(BottegaSettings):
    """Settings of the model server."""

    serve: ServeOptions = Field(default_factory=ServeOptions)

    @property
    def model_cache_dir(self) -> Path:
        """The local copy of every model this server has loaded, for a start without MLflow."""
        return self.serve.model_cache_dir or self.home / "serving" / "models"

    @property
    def prediction_journal_dir(self) -> Path:
        """Where each worker journals its predictions until Kafka has them."""
        return self.home / "serving" / "journal"
