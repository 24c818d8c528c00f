"""The oracle: how well the Bayes-optimal score does, window by window and phase by phase.

Each simulated event carries its true fraud probability. Ranking by it gives the oracle's PR-AUC
(average precision), the ceiling for any model on the same events. A ceiling near 1.0 would mean
the task is trivially separable; the scenarios are tuned to keep it well below.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sklearn.metrics import average_precision_score

from bottega.usecases.fraud.simulator import SimulatedEvent


@dataclass(frozen=True)
class OracleRow:
    """The oracle's figures over one stretch of events.

    For a window, ``start`` and ``end`` are its bounds, ``[start, end)``; for a phase or the whole
    run, the times of its first and last events.
    """

    start: datetime
    end: datetime
    phase: str  # the phase, or several joined by "+" when a window spans a boundary
    n: int
    frauds: int
    fraud_rate: float
    expected_fraud_rate: float  # the mean true probability: what the rate "should" be
    oracle_pr_auc: float | None  # None when there is no fraud to rank

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, times in ISO 8601."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "phase": self.phase,
            "n": self.n,
            "frauds": self.frauds,
            "fraud_rate": self.fraud_rate,
            "expected_fraud_rate": self.expected_fraud_rate,
            "oracle_pr_auc": self.oracle_pr_auc,
        }


@dataclass(frozen=True)
class PatternRow:
    """How often one generator fired, and how risky its transactions looked."""

    pattern: str
    n: int
    frauds: int
    mean_probability: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "pattern": self.pattern,
            "n": self.n,
            "frauds": self.frauds,
            "mean_probability": self.mean_probability,
        }


@dataclass(frozen=True)
class OracleReport:
    """The oracle over a run: per window, per phase, per pattern and overall."""

    window: timedelta
    windows: list[OracleRow]
    phases: list[OracleRow]
    patterns: list[PatternRow]
    overall: OracleRow | None  # None for a run with no events
    labels_never: int = 0  # transactions whose label never arrives
    label_delay_median_s: float | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "window_s": self.window.total_seconds(),
            "overall": self.overall.to_dict() if self.overall else None,
            "phases": [row.to_dict() for row in self.phases],
            "windows": [row.to_dict() for row in self.windows],
            "patterns": [row.to_dict() for row in self.patterns],
            "labels_never": self.labels_never,
            "label_delay_median_s": self.label_delay_median_s,
        }


@dataclass
class _Bucket:
    start: datetime
    end: datetime
    phases: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    truth: list[bool] = field(default_factory=list)

    def add(self, event: SimulatedEvent) -> None:
        if not self.phases or self.phases[-1] != event.phase:
            self.phases.append(event.phase)
        self.scores.append(event.fraud_probability)
        self.truth.append(event.is_fraud)

    def row(self) -> OracleRow:
        n = len(self.scores)
        frauds = sum(self.truth)
        return OracleRow(
            start=self.start,
            end=self.end,
            phase="+".join(dict.fromkeys(self.phases)),
            n=n,
            frauds=frauds,
            fraud_rate=frauds / n if n else math.nan,
            expected_fraud_rate=math.fsum(self.scores) / n if n else math.nan,
            oracle_pr_auc=pr_auc(self.truth, self.scores),
        )


def pr_auc(truth: list[bool], scores: list[float]) -> float | None:
    """Average precision of ``scores`` against ``truth``; None when there is no positive."""
    if not any(truth):
        return None
    return float(average_precision_score(truth, scores))


def oracle_report(events: Iterable[SimulatedEvent], *, window: timedelta) -> OracleReport:
    """Score a run of events with their own true probabilities.

    Windows are aligned to multiples of ``window`` since the Unix epoch, so that reports of
    different runs line up; a window that spans a phase boundary names both phases.
    """
    if window <= timedelta(0):
        raise ValueError("window must be positive")
    width = window.total_seconds()
    windows: dict[int, _Bucket] = {}
    phases: dict[str, _Bucket] = {}
    patterns: dict[str, list[float]] = {}
    pattern_frauds: dict[str, int] = {}
    overall: _Bucket | None = None
    never = 0
    delays: list[float] = []
    for event in events:
        when = event.transaction.event_time
        index = math.floor(when.timestamp() / width)
        bucket = windows.get(index)
        if bucket is None:
            begin = datetime.fromtimestamp(index * width, UTC)
            bucket = windows[index] = _Bucket(begin, begin + window)
        bucket.add(event)
        phase = phases.get(event.phase)
        if phase is None:
            phase = phases[event.phase] = _Bucket(when, when)
        phase.add(event)
        phase.end = when
        if overall is None:
            overall = _Bucket(when, when)
        overall.add(event)
        overall.end = when
        patterns.setdefault(event.pattern, []).append(event.fraud_probability)
        pattern_frauds[event.pattern] = pattern_frauds.get(event.pattern, 0) + event.is_fraud
        if event.label_time is None:
            never += 1
        else:
            delays.append((event.label_time - when).total_seconds())
    delays.sort()
    return OracleReport(
        window=window,
        windows=[windows[k].row() for k in sorted(windows)],
        phases=[bucket.row() for bucket in phases.values()],
        patterns=[
            PatternRow(name, len(ps), pattern_frauds[name], math.fsum(ps) / len(ps))
            for name, ps in sorted(patterns.items())
        ],
        overall=overall.row() if overall is not None else None,
        labels_never=never,
        label_delay_median_s=delays[len(delays) // 2] if delays else None,
    )
