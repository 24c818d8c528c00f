"""The retraining history: one record per run, appended as JSON lines so it survives restarts.

Every change of a run appends the whole record again; reading keeps the last line of each run.
A run that was in flight when the trainer stopped is read back as ``interrupted``: its child
process died with the trainer, and training registers a model only at its very end and promotion
moves the alias only at its very end, so the champion was not touched.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)

RunStatus = Literal["queued", "running", "retrying", "succeeded", "failed", "interrupted"]
ACTIVE: frozenset[str] = frozenset({"queued", "running", "retrying"})


def utc_now() -> datetime:
    """The current wall-clock time, in UTC."""
    return datetime.now(UTC)


class Attempt(BaseModel):
    """One try at a run: train, then promote."""

    number: int
    started_at: datetime
    finished_at: datetime | None = None
    error: str | None = None


class RunRecord(BaseModel):
    """A retraining run, from the alert that asked for it to the promotion decision."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    trigger: Literal["alert", "manual"]
    alerts: list[str] = Field(default_factory=list, description="Alert names that asked for it.")
    reason: str = ""
    status: RunStatus = "queued"
    received_at: datetime = Field(default_factory=utc_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    next_attempt_at: datetime | None = None
    deduplicated: int = Field(default=0, description="Alerts folded into this run while active.")
    version: str | None = Field(default=None, description="The model version it trained.")
    train: dict[str, Any] | None = Field(default=None, description="The training job's report.")
    promotion: dict[str, Any] | None = Field(default=None, description="The promotion report.")
    decision: Literal["promoted", "rejected"] | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        """True while the run has not reached an end."""
        return self.status in ACTIVE

    @property
    def duration_s(self) -> float | None:
        """From the first attempt's start to the end, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class RunHistory:
    """Runs, newest first, kept in memory and in a JSON lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._runs: dict[str, RunRecord] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = RunRecord.model_validate_json(line)
            except ValidationError:
                # A line cut short by a crash mid-write: skip it, keep the rest.
                log.warning("skipping an unreadable history line", extra={"line": number})
                continue
            self._runs[record.id] = record
        for record in list(self._runs.values()):
            if record.active:
                interrupted = record.model_copy(
                    update={
                        "status": "interrupted",
                        "finished_at": record.finished_at or utc_now(),
                        "error": "the trainer stopped while the run was in flight",
                        "next_attempt_at": None,
                    }
                )
                self.save(interrupted)

    def save(self, record: RunRecord) -> None:
        """Record the run's current state."""
        with self._lock:
            self._runs[record.id] = record
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as out:
                out.write(record.model_dump_json() + "\n")

    def get(self, run_id: str) -> RunRecord | None:
        """One run, or None."""
        with self._lock:
            return self._runs.get(run_id)

    def all(self) -> list[RunRecord]:
        """Every run, newest first."""
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: r.received_at, reverse=True)

    def as_json(self) -> list[dict[str, Any]]:
        """Every run as plain JSON values, newest first."""
        return [json.loads(r.model_dump_json()) for r in self.all()]
