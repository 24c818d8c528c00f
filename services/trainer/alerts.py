"""Alertmanager's webhook payload (version 4), as far as the trainer reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RETRAIN_LABEL = "retrain"


class Alert(BaseModel):
    """One alert of a notification."""

    # Alertmanager adds fields across versions; read what we need and ignore the rest.
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None  # noqa: N815 - Alertmanager's field name
    fingerprint: str = ""

    @property
    def name(self) -> str:
        """The alert's name (its ``alertname`` label)."""
        return self.labels.get("alertname", "")

    @property
    def wants_retraining(self) -> bool:
        """A firing alert that its rule marks ``retrain="true"``."""
        return self.status == "firing" and self.labels.get(RETRAIN_LABEL) == "true"


class Notification(BaseModel):
    """The body Alertmanager POSTs to a webhook receiver."""

    model_config = ConfigDict(extra="ignore")

    version: str = "4"
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""  # noqa: N815 - Alertmanager's field name
    alerts: list[Alert] = Field(default_factory=list)

    def retrain_alerts(self) -> list[str]:
        """Names of the firing alerts that ask for retraining, sorted and unique."""
        return sorted({a.name for a in self.alerts if a.wants_retraining})
