"""The fraud simulator: a scenario in, a time-ordered stream of labelled transactions out.

Legitimate purchases arrive as a non-homogeneous Poisson process (thinning against each phase's
peak rate); attack incidents arrive as a Poisson process per phase and plan their transactions
ahead. A heap merges both into one time-ordered stream.

Every transaction is labelled the way a model would have to predict it. In time order:

1. ``row``: the card's aggregates as they stood *before* this transaction, what
   ``aggregator.current(card_id)`` returns and exactly what serving reads from the online store;
2. ``x = request_features(txn, row, None)``: the model's feature vector (no merchant row: merchant
   features come from labelled history, which the simulator does not model);
3. ``p = concept.probability(x, txn)``: the phase's concept on those observables;
4. ``aggregator.apply(txn)``, and only then the label: ``is_fraud ~ Bernoulli(p)``.

So ``p`` is the Bayes-optimal score and its PR-AUC is the ceiling for any model. Each label arrives
after a log-normal delay, or, for a ``never_fraction`` of transactions, never.

The same scenario and arguments give the same events, byte for byte: every draw comes from seeded
streams (:mod:`bottega.usecases.fraud.rng`), event ids included. A run cut short with ``until``
yields exactly the prefix of the longer run.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid5

from bottega.events import Label, Transaction
from bottega.usecases.fraud.aggregates import CardAggregator, CardRow
from bottega.usecases.fraud.concept import Concept
from bottega.usecases.fraud.features.request import request_features
from bottega.usecases.fraud.patterns import PATTERNS, AttackContext, Pattern
from bottega.usecases.fraud.population import Population, build_population
from bottega.usecases.fraud.rng import Rng, cumulative
from bottega.usecases.fraud.scenario import Phase, Scenario
from bottega.usecases.fraud.traffic import (
    EPOCH_HOUR_OF_WEEK,
    HOURS_PER_WEEK,
    Draft,
    PhaseTraffic,
    Traffic,
)

# Label ids derive from their transaction's id: deterministic, and the same label every time.
_LABEL_NAMESPACE = UUID("5b0e7a8c-3f1d-4c6e-9a2b-7d4f1e8c0a61")


@dataclass(frozen=True, slots=True)
class SimulatedEvent:
    """One simulated transaction with its ground truth."""

    transaction: Transaction
    fraud_probability: float  # the Bayes-optimal score
    is_fraud: bool
    label_time: datetime | None  # None: the label never arrives
    pattern: str  # "normal" or the attack generator's name
    phase: str

    def label(self) -> Label | None:
        """The :class:`~bottega.events.Label` event that reports the truth, or None if it never
        arrives."""
        if self.label_time is None:
            return None
        txn = self.transaction
        return Label(
            event_id=uuid5(_LABEL_NAMESPACE, str(txn.event_id)),
            event_time=self.label_time,
            transaction_id=txn.event_id,
            card_id=txn.card_id,
            is_fraud=self.is_fraud,
            transaction_time=txn.event_time,
        )


@dataclass(frozen=True)
class PhaseWindow:
    """A phase placed on the simulated timeline: ``[start, end)``."""

    phase: Phase
    start: datetime
    end: datetime

    @property
    def name(self) -> str:
        """The phase's name."""
        return self.phase.name


class _Span:
    """A phase with everything precomputed that the hot loop needs."""

    def __init__(self, window: PhaseWindow, population: Population) -> None:
        phase = window.phase
        self.name = phase.name
        self.start = window.start.timestamp()
        self.end = window.end.timestamp()
        fraud = phase.fraud
        rate_per_s = phase.rate_per_hour / 3600.0
        self.traffic = PhaseTraffic(phase, population, rate_per_s * (1.0 - fraud.attack_rate))
        self.concept = Concept(
            fraud.concept, intercept_shift=fraud.intercept_shift, compromised=population.compromised
        )
        # attack_rate is a share of transactions; each pattern's share of those becomes an
        # incident rate. A pattern that strikes only some hours strikes proportionally harder.
        total_weight = sum(fraud.patterns.values())
        self.patterns: tuple[Pattern, ...] = tuple(PATTERNS[name] for name in fraud.patterns)
        rates = []
        for pattern in self.patterns:
            share = fraud.patterns[pattern.name] / total_weight if total_weight else 0.0
            hours = pattern.hours
            duty = 24.0 / (hours[1] - hours[0]) if hours else 1.0
            rates.append(fraud.attack_rate * rate_per_s * share / pattern.mean_events * duty)
        self.incident_rate = sum(rates)
        self.pattern_sums = cumulative(rates)
        labels = phase.labels
        self.delay_median_s = labels.delay_median.total_seconds()
        self.delay_sigma = labels.delay_sigma
        self.never_fraction = labels.never_fraction


class Simulator:
    """Plays a :class:`~bottega.usecases.fraud.scenario.Scenario`.

    ``start`` overrides the scenario's start. ``until`` stops early or, when it lies past the
    scenario's end, keeps the last phase running until then (backfill uses it to make N days of
    history). ``history`` prepends that much of the first phase before ``start``, so that cards
    have aggregates when the timeline proper begins; one run then covers both the backfilled
    history and the replay, and the oracle's probabilities stay consistent with the store.
    ``cards``, instead, makes each run start from cards that already have a past: it returns the
    aggregator to begin with (the replay tool rebuilds it from the feature store's raw log), and
    each run calls it afresh.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        start: datetime | None = None,
        until: datetime | None = None,
        history: timedelta | None = None,
        cards: Callable[[], CardAggregator] | None = None,
    ) -> None:
        for name, value in (("start", start), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must carry a timezone (UTC expected), got {value}")
        self.scenario = scenario
        self._cards = cards or CardAggregator
        origin = (start if start is not None else scenario.start).astimezone(UTC)
        self.start = origin - (history or timedelta(0))
        scripted_end = origin + scenario.duration
        self.end = scripted_end if until is None else until.astimezone(UTC)
        if self.end <= self.start:
            raise ValueError(f"until ({self.end.isoformat()}) must be after the start")
        self.population = build_population(
            scenario.seed,
            cards=scenario.population.cards,
            merchants=scenario.population.merchants,
        )
        self.windows = self._timeline(origin)
        self._spans = [_Span(window, self.population) for window in self.windows]

    def _timeline(self, origin: datetime) -> tuple[PhaseWindow, ...]:
        windows = []
        begin = self.start
        phase_end = origin
        phases = self.scenario.phases
        for i, phase in enumerate(phases):
            phase_end += phase.duration
            # The last phase runs until the end, whether that cuts it short or stretches it.
            end = self.end if i == len(phases) - 1 else min(phase_end, self.end)
            if end > begin:
                windows.append(PhaseWindow(phase, begin, end))
            begin = max(begin, end)
            if begin >= self.end:
                break
        return tuple(windows)

    def concept(self, phase: str) -> Concept:
        """The concept that labels transactions in ``phase``."""
        for span in self._spans:
            if span.name == phase:
                return span.concept
        raise KeyError(f"no phase {phase!r} in this run; phases: {[s.name for s in self._spans]}")

    def events(self) -> Iterator[SimulatedEvent]:
        """The run's events in time order; each call replays the run from the start."""
        seed = self.scenario.seed
        traffic_rng, attack_rng = Rng(seed, "traffic"), Rng(seed, "attacks")
        # Ids also depend on where the run starts: two runs of one scenario over different
        # spans (a backfill, then a replay) must never reuse an event_id.
        id_rng = Rng(seed, f"ids@{self.start.isoformat()}")
        label_rng = Rng(seed, "labels")
        traffic = Traffic(self.population, traffic_rng)
        context = AttackContext(self.population, attack_rng)
        aggregator = self._cards()
        rows: dict[str, CardRow] = {}
        spans = self._spans
        end = self.end.timestamp()
        start = self.start.timestamp()
        # Attack incidents and their planned transactions wait in a heap; the legitimate stream,
        # nearly every event, needs only its next arrival time and skips the heap. At equal
        # times the legitimate event goes first, then the heap in insertion order: deterministic.
        counter = itertools.count()
        heap: list[tuple[float, int, Draft | None]] = []
        legit_t, legit_span = self._next_legit(start, 0, traffic_rng)
        incident_t, incident_span = self._next_incident(start, 0, attack_rng)
        if incident_t < end:
            heap.append((incident_t, next(counter), None))
        i = 0
        span = spans[0]
        while True:
            legit = not heap or legit_t <= heap[0][0]
            if legit:
                if legit_t >= end:
                    return
                t, planned = legit_t, None
            else:
                t, _, planned = heapq.heappop(heap)
            while t >= span.end:
                i += 1
                span = spans[i]
            if legit:
                draft = traffic.draft(t, span.traffic)
                context.remember(draft.card)
                legit_t, legit_span = self._next_legit(t, legit_span, traffic_rng)
            elif planned is not None:
                draft = planned
            else:
                pattern = span.patterns[attack_rng.pick(span.pattern_sums)]
                hours = pattern.hours
                if hours is None or hours[0] <= int(t // 3600.0) % 24 < hours[1]:
                    for step in pattern.generate(context, t):
                        if step.time < end:
                            heapq.heappush(heap, (step.time, next(counter), step))
                incident_t, incident_span = self._next_incident(t, incident_span, attack_rng)
                if incident_t < end:
                    heapq.heappush(heap, (incident_t, next(counter), None))
                continue
            yield _label(draft, span, aggregator, rows, id_rng, label_rng)

    def _next_legit(self, t: float, i: int, rng: Rng) -> tuple[float, int]:
        # Thinning: candidates at the phase's peak rate, each kept with probability
        # rate(t) / peak. At a phase boundary the process restarts with the next phase's rates,
        # which the exponential's lack of memory makes exact. Returns (time, span index).
        random, log = rng.random, math.log
        spans = self._spans
        while i < len(spans):
            span = spans[i]
            peak = span.traffic.peak_rate
            rates = span.traffic.week_rates
            if peak > 0:
                while True:
                    t -= log(1.0 - random()) / peak
                    if t >= span.end:
                        break
                    # hour_of_week(t), inlined: this loop runs about twice per event.
                    hour = (int(t // 3600.0) + EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK
                    if random() * peak < rates[hour]:
                        return t, i
            t = span.end
            i += 1
        return math.inf, i

    def _next_incident(self, t: float, i: int, rng: Rng) -> tuple[float, int]:
        spans = self._spans
        while i < len(spans):
            span = spans[i]
            if span.incident_rate > 0:
                t += rng.exponential(span.incident_rate)
                if t < span.end:
                    return t, i
            t = span.end
            i += 1
        return math.inf, i


def _label(
    draft: Draft,
    span: _Span,
    aggregator: CardAggregator,
    rows: dict[str, CardRow],
    id_rng: Rng,
    label_rng: Rng,
) -> SimulatedEvent:
    card = draft.card
    merchant = draft.merchant
    txn = Transaction(
        event_id=id_rng.uuid4(),
        event_time=datetime.fromtimestamp(draft.time, UTC),
        card_id=card.card_id,
        merchant_id=merchant.merchant_id,
        amount=draft.amount,
        merchant_category=merchant.category,
        country=draft.country,
        card_country=card.country,
        channel=draft.channel,
        device_id=draft.device_id,
    )
    # The row that apply() returned for the card's previous transaction is, field for field,
    # what aggregator.current() returns now: the card's state has not changed since. Reusing it
    # saves computing every row twice, a fifth of the simulator's time.
    row = rows.get(card.card_id) or aggregator.current(card.card_id)
    x = request_features(txn, row.features() if row is not None else None, None)
    p = span.concept.probability(x, txn)
    _, new_row = aggregator.apply(txn)
    if new_row is not None:
        rows[card.card_id] = new_row
    # A fixed number of draws per event, whatever the outcome, keeps the stream aligned.
    is_fraud = label_rng.random() < p
    never = label_rng.random() < span.never_fraction
    delay = span.delay_median_s * math.exp(span.delay_sigma * label_rng.normal())
    return SimulatedEvent(
        txn,
        p,
        is_fraud,
        None if never else datetime.fromtimestamp(draft.time + delay, UTC),
        draft.pattern,
        span.name,
    )
