"""Settings of the ingest process (``BOTTEGA_STREAM__*`` for its own options)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bottega.settings import BottegaSettings


class StreamOptions(BaseModel):
    """How the ingest consumes."""

    model_config = ConfigDict(extra="forbid")

    transactions_group: str = "bottega-ingest"
    labels_group: str = "bottega-ingest-labels"
    max_batch: int = Field(default=5000, ge=1, description="Events per micro-batch, at most.")
    linger_ms: int = Field(
        default=500, ge=0, description="How long to fill a micro-batch before writing it."
    )
    lag_interval_s: float = Field(default=5.0, gt=0, description="How often to measure lag.")


class IngestSettings(BottegaSettings):
    """Settings of ``python -m services.ingest``."""

    stream: StreamOptions = Field(default_factory=StreamOptions)
