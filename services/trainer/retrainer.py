"""One retraining at a time: deduplication, cooldown, retries with backoff.

A request (an alert or a manual trigger) starts a run only when none is in flight and the
cooldown after the last run has passed. A request that arrives while a run is in flight is
folded into that run (``deduplicated``); one that arrives during the cooldown is refused
(``cooling_down``). A failed attempt is retried after a growing backoff, up to ``max_attempts``;
then the run is recorded as failed. Training registers a challenger and only promotion moves
the ``champion`` alias, as its last step, so a failure anywhere leaves the champion as it was.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from services.trainer.history import Attempt, RunHistory, RunRecord
from services.trainer.jobs import Jobs
from services.trainer.metrics import TrainerMetrics

log = logging.getLogger(__name__)

# The alert that shows the champion failing on live labels: a run it starts judges the champion
# degraded (pipelines/promote/policy.py).
QUALITY_ALERT = "ModelQualityDegraded"

Clock = Callable[[], float]


class Outcome(StrEnum):
    """What the trainer did with a request."""

    ACCEPTED = "accepted"
    DEDUPLICATED = "deduplicated"
    COOLING_DOWN = "cooling_down"


@dataclass(frozen=True)
class RetrainPolicy:
    """Cooldown and retries."""

    cooldown_s: float = 300.0
    max_attempts: int = 3
    backoff_initial_s: float = 30.0
    backoff_max_s: float = 600.0

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt: doubling, capped."""
        return float(min(self.backoff_initial_s * 2 ** max(failures - 1, 0), self.backoff_max_s))


@dataclass(frozen=True)
class Submission:
    """The answer to a request."""

    outcome: Outcome
    run: RunRecord | None = None
    retry_after_s: float | None = None


class Retrainer:
    """Runs retraining requests one at a time, on a worker thread of its own."""

    def __init__(
        self,
        jobs: Jobs,
        history: RunHistory,
        policy: RetrainPolicy,
        metrics: TrainerMetrics,
        *,
        clock: Clock = time.time,
    ) -> None:
        self._jobs = jobs
        self._history = history
        self._policy = policy
        self._metrics = metrics
        self._clock = clock
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._active: RunRecord | None = None
        self._cooldown_until = self._cooldown_from(history)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _cooldown_from(self, history: RunHistory) -> float:
        finished = [r.finished_at for r in history.all() if r.finished_at is not None]
        return max(finished).timestamp() + self._policy.cooldown_s if finished else 0.0

    @property
    def active(self) -> RunRecord | None:
        """The run in flight, if any."""
        with self._cond:
            return self._active

    def submit(
        self, trigger: Literal["alert", "manual"], alerts: list[str], reason: str = ""
    ) -> Submission:
        """Start a run, fold the request into the run in flight, or refuse it in the cooldown."""
        with self._cond:
            if self._active is not None:
                record = self._active.model_copy(
                    update={"deduplicated": self._active.deduplicated + 1}
                )
                self._active = record
                self._history.save(record)
                outcome = Submission(Outcome.DEDUPLICATED, record)
            elif self._clock() < self._cooldown_until:
                outcome = Submission(
                    Outcome.COOLING_DOWN, retry_after_s=self._cooldown_until - self._clock()
                )
            else:
                record = RunRecord(
                    trigger=trigger, alerts=alerts, reason=reason, received_at=self._now()
                )
                self._active = record
                self._history.save(record)
                self._metrics.running.set(1)
                self._cond.notify_all()
                outcome = Submission(Outcome.ACCEPTED, record)
        self._metrics.requests.labels(trigger, outcome.outcome.value).inc()
        log.info(
            "retraining request",
            extra={"trigger": trigger, "alerts": alerts, "outcome": outcome.outcome.value},
        )
        return outcome

    def seconds_until_due(self) -> float | None:
        """How long until the run in flight is due for its next attempt; None when none is."""
        with self._cond:
            return self._seconds_until_due()

    def step(self) -> RunRecord | None:
        """Run the next attempt when one is due; return the run's state after it."""
        with self._cond:
            record = self._active
            if record is None or record.status == "running":
                return None
            due = record.next_attempt_at
            if due is not None and due.timestamp() > self._clock():
                return None
            number = len(record.attempts) + 1
            now = self._now()
            record = record.model_copy(
                update={
                    "status": "running",
                    "started_at": record.started_at or now,
                    "next_attempt_at": None,
                    "attempts": [*record.attempts, Attempt(number=number, started_at=now)],
                }
            )
            self._active = record
            self._history.save(record)
        return self._attempt(record)

    def _attempt(self, record: RunRecord) -> RunRecord:
        number = len(record.attempts)
        log.info("retraining", extra={"run": record.id, "attempt": number})
        try:
            trained = self._jobs.train()
            version = str(trained["version"])
            record = self._update(record, version=version, train=trained)
            # Only a quality alert is live evidence that the champion is failing; drift alone
            # says the inputs moved, not that its answers turned wrong (docs/monitoring.md).
            degraded = record.trigger == "alert" and QUALITY_ALERT in record.alerts
            promotion = self._jobs.promote(version, champion_degraded=degraded)
        except Exception as exc:  # any failure of a job, whatever its type, is a failed attempt
            return self._failed(record, f"{type(exc).__name__}: {exc}")
        promoted = bool(promotion.get("promoted"))
        now = self._now()
        return self._finish(
            record,
            status="succeeded",
            promotion=promotion,
            decision="promoted" if promoted else "rejected",
            attempts=self._closed(record, now, None),
            finished_at=now,
        )

    def _failed(self, record: RunRecord, error: str) -> RunRecord:
        now = self._now()
        failures = len(record.attempts)
        self._metrics.failed_attempts.inc()
        log.error("retraining attempt failed", extra={"run": record.id, "error": error})
        attempts = self._closed(record, now, error)
        if failures < self._policy.max_attempts:
            wait = self._policy.backoff(failures)
            retry = record.model_copy(
                update={
                    "status": "retrying",
                    "attempts": attempts,
                    "error": error,
                    "next_attempt_at": now + timedelta(seconds=wait),
                }
            )
            with self._cond:
                self._active = retry
                self._history.save(retry)
                self._cond.notify_all()
            return retry
        return self._finish(
            record, status="failed", error=error, attempts=attempts, finished_at=now
        )

    @staticmethod
    def _closed(record: RunRecord, now: datetime, error: str | None) -> list[Attempt]:
        last = record.attempts[-1].model_copy(update={"finished_at": now, "error": error})
        return [*record.attempts[:-1], last]

    def _update(self, record: RunRecord, **changes: object) -> RunRecord:
        with self._cond:
            record = record.model_copy(update={**changes, "deduplicated": self._deduplicated()})
            self._active = record
            self._history.save(record)
        return record

    def _deduplicated(self) -> int:
        return self._active.deduplicated if self._active is not None else 0

    def _finish(self, record: RunRecord, **changes: object) -> RunRecord:
        with self._cond:
            record = record.model_copy(update={**changes, "deduplicated": self._deduplicated()})
            self._active = None
            self._history.save(record)
            self._cooldown_until = self._clock() + self._policy.cooldown_s
        outcome = record.decision or "failed"
        self._metrics.runs.labels(outcome).inc()
        if record.decision == "promoted":
            self._metrics.promotions.inc()
        self._metrics.running.set(0)
        if record.duration_s is not None:
            self._metrics.last_duration.set(record.duration_s)
        self._metrics.last_finished.set(self._clock())
        log.info(
            "retraining run finished",
            extra={"run": record.id, "outcome": outcome, "version": record.version},
        )
        return record

    def start(self) -> Retrainer:
        """Start the jobs' warm workers and the worker thread."""
        self._jobs.start()
        self._thread = threading.Thread(target=self._loop, name="retrainer", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    wait = self._seconds_until_due()
                    if wait == 0.0:
                        break
                    self._cond.wait(timeout=wait)
                if self._stop:
                    return
            self.step()

    def _seconds_until_due(self) -> float | None:
        if self._active is None or self._active.status == "running":
            return None
        due = self._active.next_attempt_at
        return 0.0 if due is None else max(0.0, due.timestamp() - self._clock())

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker and kill a job in flight (the run is read back as interrupted)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._jobs.cancel()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
