"""Settings of the monitor process (``BOTTEGA_MONITORING__*`` for its own options)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bottega.settings import BottegaSettings
from bottega.usecases.fraud.scenario import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class MonitorOptions(BaseModel):
    """Windows, drift methods and thresholds, and how the monitor consumes."""

    model_config = ConfigDict(extra="forbid")

    group: str = "bottega-monitor"
    window: Duration = Field(
        default=timedelta(hours=6),
        description="Length of a window, in simulated event time. Six hours hold about 30 "
        "labelled frauds at the scenarios' rates: fewer make online quality too noisy to alert on.",
    )
    step: Duration = Field(
        default=timedelta(hours=1), description="A window closes every step of event time."
    )
    label_wait: Duration = Field(
        default=timedelta(hours=4),
        description="Quality is measured on the window that ended this long ago, so that most "
        "of its labels have arrived (labels come hours after the transaction).",
    )
    lateness: Duration = Field(
        default=timedelta(minutes=1),
        description="A window closes once predictions this much newer than its end are seen.",
    )
    min_rows: int = Field(default=200, ge=10, description="Fewer predictions: no drift computed.")
    num_method: str = Field(default="wasserstein", description="Evidently's numerical stattest.")
    num_threshold: float = Field(
        default=0.2,
        gt=0,
        description="Wasserstein distance in units of the reference's spread; calm windows "
        "reach 0.1 to 0.2 on the count features (small night windows, a daily cycle).",
    )
    cat_method: str = Field(default="jensenshannon", description="Evidently's categorical test.")
    cat_threshold: float = Field(default=0.1, gt=0)
    prediction_method: str = Field(default="psi", description="The stattest on the score.")
    prediction_threshold: float = Field(default=0.2, gt=0)
    excluded_features: tuple[str, ...] = Field(
        default=("hour_of_day", "day_of_week"),
        description="Features not tested for drift: a window of hours never has the reference's "
        "spread of hours and days, so they would always drift.",
    )
    reference_poll_s: float = Field(
        default=30.0, gt=0, description="How often to check the champion alias, besides events."
    )
    max_pending_windows: int = Field(
        default=4, ge=1, description="Closed windows waiting for analysis; older ones are skipped."
    )
    max_reports: int = Field(default=500, ge=1, description="HTML reports kept on disk.")
    reports_dir: Path | None = Field(default=None, description="Default <home>/monitor/reports.")
    max_batch: int = Field(default=2000, ge=1)
    linger_ms: int = Field(default=200, ge=0)

    @model_validator(mode="after")
    def _step_within_window(self) -> MonitorOptions:
        if self.step > self.window:
            raise ValueError("step must not be longer than window (windows would leave gaps)")
        if self.step <= timedelta(0) or self.window <= timedelta(0):
            raise ValueError("window and step must be positive")
        return self


class MonitorSettings(BottegaSettings):
    """Settings of ``python -m services.monitor``."""

    monitoring: MonitorOptions = Field(default_factory=MonitorOptions)

    @property
    def reports_path(self) -> Path:
        """Where the per-window HTML reports are written."""
        return self.monitoring.reports_dir or self.home / "monitor" / "reports"
