"""The replay player: a scenario's events played against the running stack, as a payment system
would send them.

For each simulated transaction, in simulated-time order, the player:

1. waits until the transaction is due on the wall clock (``speed`` simulated seconds per wall
   second, and never more than ``rate`` transactions per wall second);
2. asks the model server for a score (``POST /predict``, a flat JSON transaction);
3. then publishes the transaction on ``transactions``, so that the ingest folds it into the
   card's features only after it was scored, as in production;
4. publishes each label on ``labels`` once the simulated clock passes its label time.

Requests run on a small pool of threads, so a slow answer does not stall the clock; when every
thread is busy the player falls behind, and the progress display shows it. A failed request is
counted, and the transaction is published all the same: the payment happened.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from bottega.events import Label, Transaction
from bottega.usecases.fraud.oracle import pr_auc
from bottega.usecases.fraud.simulator import SimulatedEvent

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the player needs from the bus (``bottega.bus.Producer``)."""

    def publish(self, event: Any, *, topic: str | None = None) -> Any:
        """Send an event, asynchronously."""

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every sent event is acknowledged."""


@dataclass(frozen=True)
class ReplayOptions:
    """How fast to play, and how hard to push."""

    speed: float | None = 600.0  # simulated seconds per wall second; None: as fast as allowed
    rate: float | None = None  # at most this many transactions per wall second
    concurrency: int = 8  # requests in flight at once
    # The replay is the outside world, not the platform: on a machine it shares with the stack
    # it runs at this CPU niceness, so a retraining or the model server is not starved by the
    # load it generates (0: leave the priority alone).
    nice: int = 10
    predict: bool = True  # False: publish only (no model server)
    flush_labels: bool = False  # at the end, publish the labels not yet due
    timeout_s: float = 10.0  # per request
    # At the end, how long to wait for the broker to acknowledge every event sent: long enough
    # to ride out a broker that restarts as the replay ends (BOTTEGA_KAFKA__OUTAGE_WAIT_S's
    # default). A broker that comes back within it loses the replay nothing.
    flush_timeout_s: float = 300.0
    oracle_window: timedelta = timedelta(hours=2)  # simulated; epoch-aligned

    def __post_init__(self) -> None:
        if self.speed is not None and self.speed <= 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.speed is None and self.rate is None:
            raise ValueError("give a speed, a rate, or both")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice must be between 0 and 19, got {self.nice}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.flush_timeout_s <= 0:
            raise ValueError(f"flush_timeout_s must be positive, got {self.flush_timeout_s}")


@dataclass(frozen=True)
class PhaseMark:
    """When a phase began, in simulated and in wall time."""

    name: str
    simulated: datetime
    wall: float  # time.time()


@dataclass(frozen=True)
class OracleWindow:
    """The oracle's PR-AUC over one simulated window of the replay: the ceiling for any model."""

    start: datetime
    end: datetime
    wall_end: float  # time.time() when the replay left the window
    transactions: int
    frauds: int
    pr_auc: float | None  # None without a fraud

    def to_dict(self) -> dict[str, object]:
        """Plain values."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "wall_end": round(self.wall_end, 3),
            "transactions": self.transactions,
            "frauds": self.frauds,
            "pr_auc": self.pr_auc,
        }


@dataclass(frozen=True, slots=True)
class Served:
    """One answer of the model server, with the truth the simulator knows about it."""

    version: str
    phase: str
    simulated: datetime
    wall: float
    score: float
    oracle: float  # the simulator's true probability
    is_fraud: bool
    labelled: bool  # False: the platform never learns the truth


@dataclass
class ReplayStats:
    """What the replay has done so far; read by the progress display, returned at the end."""

    scenario: str
    sim_start: datetime
    sim_end: datetime
    wall_started: float = field(default_factory=time.time)
    wall_finished: float | None = None
    sim_now: datetime | None = None
    phase: str = ""
    phases: list[PhaseMark] = field(default_factory=list)
    transactions: int = 0
    lead_in: int = 0  # transactions published, unscored, to close the gap before the start
    predict_retries: int = 0  # requests sent again after a transport failure
    frauds: int = 0
    predicted: int = 0
    predict_errors: int = 0
    labels_sent: int = 0
    labels_pending: int = 0
    labels_never: int = 0
    last_score: float | None = None
    last_decision: str = ""
    last_version: str = ""
    versions_seen: dict[str, int] = field(default_factory=dict)
    behind_s: float = 0.0  # how far the player trails its schedule
    interrupted: bool = False
    finished: bool = False
    oracle: list[OracleWindow] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)
    first_answer: dict[str, tuple[float, datetime]] = field(default_factory=dict)
    clock: list[tuple[float, datetime]] = field(default_factory=list)  # (wall, simulated)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=4000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def followed_by(self, later: ReplayStats) -> ReplayStats:
        """One record of this replay and ``later``, which continued it: answers, clock and
        counts of both; the planned span and the phase marks of this one come first."""
        versions = dict(self.versions_seen)
        for version, count in later.versions_seen.items():
            versions[version] = versions.get(version, 0) + count
        return dataclasses.replace(
            self,
            sim_end=later.sim_end,
            wall_finished=later.wall_finished,
            sim_now=later.sim_now,
            phases=[*self.phases, *later.phases],
            transactions=self.transactions + later.transactions,
            lead_in=self.lead_in + later.lead_in,
            predict_retries=self.predict_retries + later.predict_retries,
            frauds=self.frauds + later.frauds,
            predicted=self.predicted + later.predicted,
            predict_errors=self.predict_errors + later.predict_errors,
            labels_sent=self.labels_sent + later.labels_sent,
            labels_pending=later.labels_pending,
            labels_never=self.labels_never + later.labels_never,
            versions_seen=versions,
            interrupted=later.interrupted,
            oracle=[*self.oracle, *later.oracle],
            served=[*self.served, *later.served],
            first_answer={**later.first_answer, **self.first_answer},
            clock=[*self.clock, *later.clock],
        )

    def rate(self, over_s: float = 5.0) -> float:
        """Transactions per wall second over the last ``over_s`` seconds."""
        now = time.time()
        with self._lock:
            recent = [t for t in self._recent if now - t <= over_s]
        return len(recent) / over_s

    def percentile_ms(self, q: float) -> float | None:
        """A percentile of the recent request latencies, in milliseconds."""
        with self._lock:
            values = sorted(self.latencies_ms)
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))]

    def to_dict(self) -> dict[str, object]:
        """The final report as plain values."""
        return {
            "scenario": self.scenario,
            "sim_start": self.sim_start.isoformat(),
            "sim_end": (self.sim_now or self.sim_start).isoformat(),
            "planned_end": self.sim_end.isoformat(),
            "wall_started": round(self.wall_started, 3),
            "wall_seconds": round((self.wall_finished or time.time()) - self.wall_started, 2),
            "phases": [
                {"name": p.name, "simulated": p.simulated.isoformat(), "wall": round(p.wall, 3)}
                for p in self.phases
            ],
            "transactions": self.transactions,
            "lead_in": self.lead_in,
            "frauds": self.frauds,
            "predicted": self.predicted,
            "predict_errors": self.predict_errors,
            "predict_retries": self.predict_retries,
            "labels_sent": self.labels_sent,
            "labels_pending": self.labels_pending,
            "labels_never": self.labels_never,
            "versions_seen": dict(self.versions_seen),
            "first_answer": {
                v: {"wall": round(w, 3), "simulated": t.isoformat()}
                for v, (w, t) in self.first_answer.items()
            },
            "oracle": [w.to_dict() for w in self.oracle],
            "p50_ms": self.percentile_ms(0.5),
            "p99_ms": self.percentile_ms(0.99),
            "interrupted": self.interrupted,
        }


def request_body(txn: Transaction) -> dict[str, Any]:
    """The flat JSON body of ``POST /predict`` for ``txn``."""
    return txn.model_dump(mode="json")


class Player:
    """Plays ``events`` against a model server and the bus; see the module's docstring."""

    def __init__(
        self,
        events: Iterable[SimulatedEvent],
        stats: ReplayStats,
        options: ReplayOptions,
        *,
        publisher: Publisher,
        client: httpx.Client | None,
        clock: Callable[[], float] = time.monotonic,
        lead_in_until: datetime | None = None,
    ) -> None:
        if options.predict and client is None:
            raise ValueError("predicting needs an HTTP client for the model server")
        self.events = events
        self.stats = stats
        self.options = options
        self.publisher = publisher
        self.client = client
        self.clock = clock
        # Events before this time are the lead-in: published at once, neither paced nor scored.
        self.lead_in_until = lead_in_until.timestamp() if lead_in_until else float("-inf")
        self._labels: list[tuple[float, int, Label]] = []
        self._order = itertools.count()
        self._slots = threading.BoundedSemaphore(options.concurrency)
        self._window: int | None = None
        self._truth: list[bool] = []
        self._scores: list[float] = []

    def run(self, stop: threading.Event) -> ReplayStats:
        """Play until the events end or ``stop`` is set; wait for requests in flight."""
        stats = self.stats
        wall_zero = self.clock()
        sim_zero = stats.sim_start.timestamp()
        previous_due = wall_zero
        paced = False
        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="replay") as pool:
            for event in self.events:
                if stop.is_set():
                    stats.interrupted = True
                    break
                txn = event.transaction
                t = txn.event_time.timestamp()
                if t < self.lead_in_until:
                    self._lead_in(event)
                    continue
                if not paced:
                    # The clock starts with the first paced event, after the lead-in.
                    wall_zero = previous_due = self.clock()
                    paced = True
                due = self._due(t - sim_zero, wall_zero, previous_due)
                previous_due = due
                if not self._wait_until(due, stop):
                    stats.interrupted = True
                    break
                stats.behind_s = max(0.0, self.clock() - due)
                self._publish_due_labels(t)
                self._mark_phase(event)
                stats.sim_now = txn.event_time
                if stats.transactions % 200 == 0:
                    stats.clock.append((time.time(), txn.event_time))
                stats.transactions += 1
                stats.frauds += int(event.is_fraud)
                self._track_oracle(event)
                self._schedule_label(event)
                if self.options.predict:
                    self._slots.acquire()
                    future: Future[None] = pool.submit(self._score_then_publish, event)
                    future.add_done_callback(lambda _: self._slots.release())
                else:
                    self.publisher.publish(txn)
                    stats._recent.append(time.time())
        self._close_oracle_window()
        if self.options.flush_labels and not stats.interrupted:
            self._publish_due_labels(float("inf"))
        stats.labels_pending = len(self._labels)
        self.publisher.flush(timeout=self.options.flush_timeout_s)
        stats.finished = True
        stats.wall_finished = time.time()
        return stats

    def _lead_in(self, event: SimulatedEvent) -> None:
        txn = event.transaction
        self._publish_due_labels(txn.event_time.timestamp())
        self._schedule_label(event)
        self.publisher.publish(txn)
        self.stats.phase = "lead-in"
        self.stats.sim_now = txn.event_time
        self.stats.lead_in += 1

    def _due(self, sim_offset_s: float, wall_zero: float, previous_due: float) -> float:
        due = wall_zero
        if self.options.speed is not None:
            due = wall_zero + sim_offset_s / self.options.speed
        if self.options.rate is not None:
            due = max(due, previous_due + 1.0 / self.options.rate)
        return due

    def _wait_until(self, due: float, stop: threading.Event) -> bool:
        while True:
            left = due - self.clock()
            if left <= 0:
                return True
            if stop.wait(min(left, 0.25)):
                return False

    def _mark_phase(self, event: SimulatedEvent) -> None:
        if event.phase != self.stats.phase:
            self.stats.phase = event.phase
            mark = PhaseMark(event.phase, event.transaction.event_time, time.time())
            self.stats.phases.append(mark)
            log.info("phase", extra={"phase": event.phase, "simulated": mark.simulated.isoformat()})

    def _track_oracle(self, event: SimulatedEvent) -> None:
        width = self.options.oracle_window.total_seconds()
        index = math.floor(event.transaction.event_time.timestamp() / width)
        if index != self._window:
            self._close_oracle_window()
            self._window = index
        self._truth.append(event.is_fraud)
        self._scores.append(event.fraud_probability)

    def _close_oracle_window(self) -> None:
        if self._window is None or not self._truth:
            return
        width = self.options.oracle_window.total_seconds()
        start = datetime.fromtimestamp(self._window * width, UTC)
        self.stats.oracle.append(
            OracleWindow(
                start=start,
                end=start + self.options.oracle_window,
                wall_end=time.time(),
                transactions=len(self._truth),
                frauds=sum(self._truth),
                pr_auc=pr_auc(self._truth, self._scores),
            )
        )
        self._truth, self._scores = [], []

    def _schedule_label(self, event: SimulatedEvent) -> None:
        label = event.label()
        if label is None:
            self.stats.labels_never += 1
            return
        heapq.heappush(self._labels, (label.event_time.timestamp(), next(self._order), label))

    def _publish_due_labels(self, sim_now: float) -> None:
        while self._labels and self._labels[0][0] <= sim_now:
            _, _, label = heapq.heappop(self._labels)
            self.publisher.publish(label)
            self.stats.labels_sent += 1

    def _score_then_publish(self, event: SimulatedEvent) -> None:
        assert self.client is not None
        txn = event.transaction
        stats = self.stats
        started = time.perf_counter()
        try:
            response = self._post(txn)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status_code == 200:
                answer = response.json()
                with stats._lock:
                    stats.predicted += 1
                    stats.latencies_ms.append(elapsed_ms)
                    stats.last_score = float(answer["score"])
                    stats.last_decision = str(answer["decision"])
                    version = str(answer["model_version"])
                    stats.last_version = version
                    stats.versions_seen[version] = stats.versions_seen.get(version, 0) + 1
                    now = time.time()
                    stats.first_answer.setdefault(version, (now, txn.event_time))
                    stats.served.append(
                        Served(
                            version,
                            event.phase,
                            txn.event_time,
                            now,
                            stats.last_score,
                            event.fraud_probability,
                            event.is_fraud,
                            event.label_time is not None,
                        )
                    )
            else:
                self._failed(f"HTTP {response.status_code}: {response.text[:200]}")
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            self._failed(repr(exc))
        finally:
            # The payment happened whatever the model said: the ingest must see it.
            self.publisher.publish(txn)
            with stats._lock:
                stats._recent.append(time.time())

    def _post(self, txn: Transaction) -> httpx.Response:
        # A transport failure (the connection dropped before an answer) is retried once, as a
        # payment system's client would: scoring is idempotent, and the model server logs a
        # prediction per event id, which the monitor keys on. An HTTP error is never retried.
        assert self.client is not None
        body = request_body(txn)
        try:
            return self.client.post("/predict", json=body, timeout=self.options.timeout_s)
        except httpx.TransportError as exc:
            with self.stats._lock:
                self.stats.predict_retries += 1
            log.info("predict retried", extra={"why": repr(exc)})
            return self.client.post("/predict", json=body, timeout=self.options.timeout_s)

    def _failed(self, why: str) -> None:
        with self.stats._lock:
            self.stats.predict_errors += 1
            errors = self.stats.predict_errors
        # The first failures are worth reading; after that, the counter says enough.
        if errors <= 5 or errors % 1000 == 0:
            log.warning("predict failed", extra={"errors": errors, "why": why})
