"""Sliding windows in simulated event time, and the join of predictions with their labels.

Windows are ``size`` long and close every ``step``, on boundaries aligned to the epoch. A window
closes once the watermark passes its end by ``lateness``. Events come from several sources (the
partitions of the topics), and the windows keep the newest event time of each. While every
source is read to its end, the watermark is the newest prediction's event time. While some
sources still have unread messages (the caller says which: a consumer catching up after a
restart reads one partition's backlog before another's), the watermark is the oldest of their
newest event times, and it does not move while one of them has given nothing yet: a window never
closes before the backlog that holds its rows is read. A closed window carries two sets of rows:

- the drift rows: champion predictions whose event time falls in the window;
- the quality rows: champion predictions of the window that ended ``label_wait`` earlier,
  joined by transaction id with the labels received so far. A prediction whose label has not
  arrived is unlabelled: it counts in the label coverage, never as a negative.

This module is pure: no I/O, no clock, so unit tests drive it with hand-made events.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from bottega.events import FeatureValue, Label, Prediction

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class WindowSpec:
    """Sizes of the windows, in event time."""

    size: timedelta
    step: timedelta
    label_wait: timedelta = timedelta(0)
    lateness: timedelta = timedelta(0)

    @property
    def retention(self) -> timedelta:
        """How long rows must be kept for the windows that still need them."""
        return self.size + self.label_wait + self.step + self.lateness


@dataclass(frozen=True)
class Scored:
    """A champion prediction, as the windows keep it."""

    transaction_id: UUID
    event_time: datetime
    score: float
    decision: bool
    model_version: str
    features: dict[str, FeatureValue]

    @classmethod
    def of(cls, p: Prediction) -> Scored:
        """The parts of a prediction the windows need."""
        return cls(p.transaction_id, p.event_time, p.score, p.decision, p.model_version, p.features)


@dataclass(frozen=True)
class Joined:
    """A labelled prediction."""

    score: float
    decision: bool
    is_fraud: bool


@dataclass(frozen=True)
class Window:
    """A closed window: its drift rows and the quality rows of the window ``label_wait`` ago."""

    start: datetime
    end: datetime
    predictions: list[Scored]
    quality_start: datetime
    quality_end: datetime
    quality_rows: int
    labelled: list[Joined]
    label_delays_s: list[float] = field(default_factory=list)
    other_arms: int = 0

    @property
    def unlabelled(self) -> int:
        """Quality rows whose label has not arrived (counted, never as negatives)."""
        return self.quality_rows - len(self.labelled)


def align_up(t: datetime, step: timedelta) -> datetime:
    """The first step boundary at or after ``t``."""
    steps = math.ceil((t - EPOCH) / step)
    return EPOCH + steps * step


def align_down(t: datetime, step: timedelta) -> datetime:
    """The last step boundary at or before ``t``."""
    steps = math.floor((t - EPOCH) / step)
    return EPOCH + steps * step


class Windows:
    """The monitor's state: recent champion predictions, labels, and the next window to close."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self._predictions: dict[UUID, Scored] = {}
        self._labels: dict[UUID, Label] = {}
        self._other_arms: list[datetime] = []
        self._newest: datetime | None = None
        # The newest event time read from each source (a topic's partition).
        self._sources: dict[Hashable, datetime] = {}
        self.watermark: datetime | None = None
        self._next_end: datetime | None = None
        self.skipped = 0

    def _seen(self, source: Hashable, at: datetime) -> None:
        newest = self._sources.get(source)
        if newest is None or at > newest:
            self._sources[source] = at

    def add_prediction(self, p: Prediction, source: Hashable = "predictions") -> None:
        """Keep a champion prediction (redeliveries replace themselves); count the others."""
        self._seen(source, p.event_time)
        if self._newest is None or p.event_time > self._newest:
            self._newest = p.event_time
        if self._next_end is None:
            self._next_end = align_up(p.event_time + self.spec.size, self.spec.step)
        if p.arm == "champion":
            self._predictions[p.transaction_id] = Scored.of(p)
        else:
            self._other_arms.append(p.event_time)

    def add_label(self, label: Label, source: Hashable = "labels") -> None:
        """Keep a label until its prediction's windows are done."""
        self._seen(source, label.event_time)
        self._labels[label.transaction_id] = label

    def _watermark(self, unread: Collection[Hashable]) -> datetime | None:
        """The newest prediction's time, held back by the sources with a backlog; never back."""
        if self._newest is None:
            return None
        if any(source not in self._sources for source in unread):
            return self.watermark  # a source with a backlog has given nothing yet: hold
        candidate = min([self._newest, *(self._sources[source] for source in unread)])
        if self.watermark is not None and candidate < self.watermark:
            return self.watermark
        return candidate

    def advance(self, unread: Collection[Hashable] = ()) -> list[Window]:
        """Close every window the watermark has passed; drop rows no window needs any more.

        ``unread``: the sources that still have messages to read, which hold the watermark.
        """
        self.watermark = self._watermark(unread)
        if self.watermark is None or self._next_end is None:
            return []
        closable = self.watermark - self.spec.lateness
        # After a gap in the traffic, jump to the newest closable window instead of emitting a
        # long run of empty ones.
        newest = align_down(closable, self.spec.step)
        if newest - self._next_end > self.spec.size:
            self.skipped += int((newest - self._next_end) / self.spec.step)
            self._next_end = newest
        closed: list[Window] = []
        while self._next_end <= closable:
            closed.append(self._close(self._next_end))
            self._next_end += self.spec.step
        if closed:
            self._prune(closed[-1].end)
        return closed

    def _close(self, end: datetime) -> Window:
        start = end - self.spec.size
        q_end = end - self.spec.label_wait
        q_start = q_end - self.spec.size
        current = [s for s in self._predictions.values() if start <= s.event_time < end]
        quality = [s for s in self._predictions.values() if q_start <= s.event_time < q_end]
        labelled = [
            Joined(s.score, s.decision, self._labels[s.transaction_id].is_fraud)
            for s in quality
            if s.transaction_id in self._labels
        ]
        delays = [
            (label.event_time - label.transaction_time).total_seconds()
            for label in self._labels.values()
            if start <= label.event_time < end
        ]
        others = sum(1 for t in self._other_arms if start <= t < end)
        return Window(start, end, current, q_start, q_end, len(quality), labelled, delays, others)

    def _prune(self, newest_end: datetime) -> None:
        horizon = newest_end - self.spec.retention
        self._predictions = {k: s for k, s in self._predictions.items() if s.event_time >= horizon}
        self._labels = {
            k: label for k, label in self._labels.items() if label.transaction_time >= horizon
        }
        self._other_arms = [t for t in self._other_arms if t >= horizon]

    @property
    def sizes(self) -> tuple[int, int]:
        """Predictions and labels held now."""
        return len(self._predictions), len(self._labels)
