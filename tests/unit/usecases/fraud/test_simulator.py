"""The fraud simulator: determinism, time order, labels, and a concept built on observables only.

The shipped scenarios are simulated once per module and shared: about two simulated days of
baseline and one of each drift scenario.
"""

from __future__ import annotations

import copy
import hashlib
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bottega.events import Label, Transaction
from bottega.usecases.fraud.aggregates import CardAggregator
from bottega.usecases.fraud.concept import P_MAX, Concept
from bottega.usecases.fraud.features.request import request_features
from bottega.usecases.fraud.oracle import oracle_report, pr_auc
from bottega.usecases.fraud.scenario import Scenario, load_scenario
from bottega.usecases.fraud.simulator import SimulatedEvent, Simulator
from bottega.usecases.fraud.traffic import hour_of_week

SCENARIOS = Path(__file__).resolve().parents[4] / "scenarios"


def scenario(name: str) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.yaml")


def digest(events: Iterable[SimulatedEvent]) -> str:
    """A hash of everything an event carries, byte for byte."""
    h = hashlib.sha256()
    for e in events:
        h.update(e.transaction.to_bytes())
        h.update(repr((e.fraud_probability, e.is_fraud, e.label_time, e.pattern, e.phase)).encode())
    return h.hexdigest()


def observed(
    events: list[SimulatedEvent],
) -> Iterable[tuple[SimulatedEvent, dict[str, float | str]]]:
    """Each event with the features a model would have seen for it, recomputed from scratch."""
    aggregator = CardAggregator()
    for event in events:
        txn = event.transaction
        row = aggregator.current(txn.card_id)
        yield event, request_features(txn, row.features() if row is not None else None, None)
        aggregator.apply(txn)


@pytest.fixture(scope="module")
def baseline() -> Simulator:
    return Simulator(scenario("baseline"))


@pytest.fixture(scope="module")
def baseline_events(baseline: Simulator) -> list[SimulatedEvent]:
    return list(baseline.events())


def quieter(sc: Scenario, factor: float = 0.1) -> Scenario:
    """The same scenario at a fraction of its traffic: for tests about the timeline alone."""
    phases = [p.model_copy(update={"rate_per_hour": p.rate_per_hour * factor}) for p in sc.phases]
    return sc.model_copy(update={"phases": phases})


def half_a_day_into_the_drift(name: str) -> tuple[Simulator, list[SimulatedEvent]]:
    sc = scenario(name)
    simulator = Simulator(sc, until=sc.start + sc.phases[0].duration + timedelta(hours=12))
    return simulator, list(simulator.events())


@pytest.fixture(scope="module")
def covariate() -> tuple[Simulator, list[SimulatedEvent]]:
    return half_a_day_into_the_drift("covariate-shift")


@pytest.fixture(scope="module")
def ring() -> tuple[Simulator, list[SimulatedEvent]]:
    return half_a_day_into_the_drift("fraud-ring")


@pytest.fixture(scope="module")
def surge() -> tuple[Simulator, list[SimulatedEvent]]:
    return half_a_day_into_the_drift("label-shift")


# Determinism and the timeline.


def test_the_same_seed_gives_the_same_events_byte_for_byte() -> None:
    sc = scenario("baseline")
    until = sc.start + timedelta(hours=4)
    first = list(Simulator(sc, until=until).events())
    second = list(Simulator(sc, until=until).events())
    assert len(first) > 2000
    assert digest(first) == digest(second)
    # Event ids come from the seeded stream too, not from uuid4().
    assert [e.transaction.event_id for e in first] == [e.transaction.event_id for e in second]


def test_another_seed_gives_other_events() -> None:
    sc = scenario("baseline")
    until = sc.start + timedelta(hours=2)
    other = sc.model_copy(update={"seed": sc.seed + 1})
    mine = list(Simulator(sc, until=until).events())
    theirs = list(Simulator(other, until=until).events())
    assert digest(mine) != digest(theirs)
    assert {e.transaction.event_id for e in mine}.isdisjoint(e.transaction.event_id for e in theirs)


def test_events_come_in_time_order(baseline_events: list[SimulatedEvent]) -> None:
    times = [e.transaction.event_time for e in baseline_events]
    assert times == sorted(times)
    assert len({e.transaction.event_id for e in baseline_events}) == len(baseline_events)


def test_a_shorter_run_is_a_prefix_of_the_longer_one(
    baseline: Simulator, baseline_events: list[SimulatedEvent]
) -> None:
    until = baseline.start + timedelta(hours=9, minutes=17)
    short = list(Simulator(baseline.scenario, until=until).events())
    expected = [e for e in baseline_events if e.transaction.event_time < until]
    assert short and digest(short) == digest(expected)


def test_start_moves_the_timeline_and_until_past_the_end_keeps_the_last_phase() -> None:
    sc = quieter(scenario("label-shift"))
    start = sc.start + timedelta(days=30)
    until = start + sc.duration + timedelta(hours=3)
    simulator = Simulator(sc, start=start, until=until)
    assert [w.name for w in simulator.windows] == ["bootstrap", "surge"]
    events = list(simulator.events())
    assert events[0].transaction.event_time >= start
    boundary = start + sc.phases[0].duration
    assert all((e.phase == "bootstrap") == (e.transaction.event_time < boundary) for e in events)
    late = [e for e in events if e.transaction.event_time >= start + sc.duration]
    assert late and all(e.phase == "surge" for e in late)
    assert max(e.transaction.event_time for e in events) < until


def test_times_must_be_aware_and_in_order() -> None:
    sc = scenario("baseline")
    with pytest.raises(ValueError, match="timezone"):
        Simulator(sc, start=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="after the start"):
        Simulator(sc, until=sc.start)


def test_history_prepends_the_first_phase_before_the_start() -> None:
    sc = quieter(scenario("fraud-ring"))
    simulator = Simulator(sc, history=timedelta(hours=12), until=sc.start + timedelta(hours=1))
    events = list(simulator.events())
    before = [e for e in events if e.transaction.event_time < sc.start]
    assert before and all(e.phase == "bootstrap" for e in before)
    assert events[0].transaction.event_time >= sc.start - timedelta(hours=12)


def test_identifiers_match_the_feature_store_keys(baseline_events: list[SimulatedEvent]) -> None:
    txn = baseline_events[0].transaction
    assert txn.card_id.startswith("card-") and len(txn.card_id) == len("card-00042")
    assert txn.merchant_id.startswith("m-") and len(txn.merchant_id) == len("m-0007")
    assert txn.event_id.version == 4
    online = next(e.transaction for e in baseline_events if e.transaction.channel == "online")
    assert online.device_id is not None and online.device_id.startswith("dev-")


def test_cards_have_home_countries_and_travel_a_little(
    baseline_events: list[SimulatedEvent],
) -> None:
    homes: dict[str, set[str]] = {}
    for e in baseline_events:
        homes.setdefault(e.transaction.card_id, set()).add(e.transaction.card_country)
    assert all(len(countries) == 1 for countries in homes.values())
    present = [e.transaction for e in baseline_events if e.transaction.channel == "card_present"]
    abroad = sum(t.country != t.card_country for t in present) / len(present)
    assert 0.002 < abroad < 0.08


def test_spending_follows_the_hour_of_the_day(baseline_events: list[SimulatedEvent]) -> None:
    by_hour = Counter(e.transaction.event_time.hour for e in baseline_events)
    assert by_hour[18] > 5 * by_hour[3]
    monday = datetime(2025, 3, 3, tzinfo=UTC)
    assert hour_of_week(monday.timestamp()) == 0
    assert hour_of_week((monday + timedelta(days=6, hours=23)).timestamp()) == 167


# Attack patterns.


def test_card_testing_is_bursts_of_small_amounts_at_new_merchants(
    baseline_events: list[SimulatedEvent],
) -> None:
    tests = [e.transaction for e in baseline_events if e.pattern == "card_testing"]
    assert tests and all(t.amount < 5 for t in tests)
    bursts: dict[str, list[float]] = {}
    for t in tests:
        bursts.setdefault(f"{t.card_id}/{t.device_id}", []).append(t.event_time.timestamp())
    sizes = [len(times) for times in bursts.values()]
    # 3 to 8 a burst; only one cut short by the end of the run may have fewer.
    assert sum(3 <= size <= 8 for size in sizes) >= len(sizes) - 1
    assert all(max(times) - min(times) < 8 * 180 for times in bursts.values())


def test_account_takeover_is_large_online_amounts_abroad_from_a_new_device(
    baseline_events: list[SimulatedEvent],
) -> None:
    known_devices: dict[str, set[str | None]] = {}
    for e in baseline_events:
        t = e.transaction
        if e.pattern == "normal":
            known_devices.setdefault(t.card_id, set()).add(t.device_id)
    takeovers = [e.transaction for e in baseline_events if e.pattern == "account_takeover"]
    assert takeovers
    assert all(t.channel == "online" and t.country != t.card_country for t in takeovers)
    assert all(t.device_id not in known_devices.get(t.card_id, set()) for t in takeovers)
    normal_mean = statistics.mean(e.transaction.amount for e in baseline_events)
    assert statistics.mean(t.amount for t in takeovers) > 4 * normal_mean


def test_compromised_merchants_are_few(
    baseline: Simulator, baseline_events: list[SimulatedEvent]
) -> None:
    hit = {
        e.transaction.merchant_id for e in baseline_events if e.pattern == "compromised_merchant"
    }
    assert hit and hit <= baseline.population.compromised
    assert len(baseline.population.compromised) <= 0.02 * len(baseline.population.merchants)


# Labels.


def test_baseline_fraud_rate_is_about_half_a_percent(baseline_events: list[SimulatedEvent]) -> None:
    rate = sum(e.is_fraud for e in baseline_events) / len(baseline_events)
    assert len(baseline_events) > 40_000
    assert 0.003 <= rate <= 0.008
    expected = math.fsum(e.fraud_probability for e in baseline_events) / len(baseline_events)
    assert 0.003 <= expected <= 0.008


def test_the_oracle_is_good_but_far_from_perfect(baseline_events: list[SimulatedEvent]) -> None:
    report = oracle_report(baseline_events, window=timedelta(hours=12))
    assert report.overall is not None and report.overall.oracle_pr_auc is not None
    base_rate = report.overall.fraud_rate
    assert 10 * base_rate < report.overall.oracle_pr_auc < 0.75
    assert max(e.fraud_probability for e in baseline_events) <= P_MAX


def test_label_delays_follow_the_scenario(baseline_events: list[SimulatedEvent]) -> None:
    settings = scenario("baseline").phases[1].labels
    steady = [e for e in baseline_events if e.phase == "steady"]
    never = sum(e.label_time is None for e in steady) / len(steady)
    assert abs(never - settings.never_fraction) < 0.01
    delays = [
        (e.label_time - e.transaction.event_time).total_seconds()
        for e in steady
        if e.label_time is not None
    ]
    median = statistics.median(delays)
    assert abs(median / settings.delay_median.total_seconds() - 1) < 0.05
    sigma = statistics.stdev(math.log(d) for d in delays)
    assert abs(sigma - settings.delay_sigma) < 0.03


def test_a_label_event_reports_the_truth_and_is_deterministic(
    baseline_events: list[SimulatedEvent],
) -> None:
    fraud = next(e for e in baseline_events if e.is_fraud and e.label_time is not None)
    label = fraud.label()
    assert isinstance(label, Label)
    assert label.is_fraud and label.transaction_id == fraud.transaction.event_id
    assert label.card_id == fraud.transaction.card_id
    assert label.event_time == fraud.label_time
    assert label.transaction_time == fraud.transaction.event_time
    assert label == fraud.label()
    lost = next(e for e in baseline_events if e.label_time is None)
    assert lost.label() is None


# The concept: only observables, and drift exactly where the scenarios say.


def test_the_probability_depends_only_on_what_a_model_can_observe(
    baseline: Simulator, baseline_events: list[SimulatedEvent]
) -> None:
    # Recompute every p from the transactions alone: a fresh aggregator, the shared feature
    # function, the merchant id and the time. Neither the generator nor any hidden state enters.
    for event, x in observed(baseline_events):
        concept = baseline.concept(event.phase)
        assert concept.probability(x, event.transaction) == event.fraud_probability


def test_attacks_are_risky_only_through_what_they_make_observable(
    baseline_events: list[SimulatedEvent],
) -> None:
    by_pattern: dict[str, list[float]] = {}
    for e in baseline_events:
        by_pattern.setdefault(e.pattern, []).append(e.fraud_probability)
    normal = statistics.mean(by_pattern.pop("normal"))
    assert set(by_pattern) == {"card_testing", "account_takeover", "compromised_merchant"}
    for pattern, ps in by_pattern.items():
        assert statistics.mean(ps) > 20 * normal, pattern
    # ... and legitimate traffic sometimes looks just as risky: the labels are not given away.
    risky_normal = [
        e for e in baseline_events if e.pattern == "normal" and e.fraud_probability > 0.2
    ]
    assert len(risky_normal) > 20


def test_covariate_shift_moves_the_inputs_but_not_the_concept(
    covariate: tuple[Simulator, list[SimulatedEvent]],
) -> None:
    simulator, events = covariate
    before = [e.transaction for e in events if e.phase == "bootstrap"]
    after = [e.transaction for e in events if e.phase == "shifted"]

    def share(txns: list[Transaction], test: Callable[[Transaction], bool]) -> float:
        return sum(map(test, txns)) / len(txns)

    assert share(after, lambda t: t.merchant_category == "electronics") > 1.8 * share(
        before, lambda t: t.merchant_category == "electronics"
    )
    assert share(after, lambda t: t.card_country in ("GB", "US")) > 2 * share(
        before, lambda t: t.card_country in ("GB", "US")
    )
    assert abs(share(after, lambda t: t.channel == "online") - 0.45) < 0.03
    grocery = [t.amount for t in after if t.merchant_category == "grocery"]
    grocery_before = [t.amount for t in before if t.merchant_category == "grocery"]
    assert statistics.median(grocery) > 1.25 * statistics.median(grocery_before)

    old, new = simulator.concept("bootstrap"), simulator.concept("shifted")
    for event, x in observed(events):
        assert old.probability(x, event.transaction) == new.probability(x, event.transaction)


def test_the_fraud_ring_makes_a_benign_region_risky(
    ring: tuple[Simulator, list[SimulatedEvent]],
) -> None:
    simulator, events = ring
    old, new = simulator.concept("bootstrap"), simulator.concept("ring")
    region, elsewhere = [], 0
    for event, x in observed(events):
        before = old.probability(x, event.transaction)
        after = new.probability(x, event.transaction)
        if new.contributions(x, event.transaction)["fraud_ring"] > 0:
            region.append((before, after, event))
        else:
            assert before == after
            elsewhere += 1
    assert elsewhere > 10_000 and len(region) > 50
    # Same x, different p: the concept drifted, and only inside the region.
    assert all(after > before for before, after, _ in region)
    # Under the bootstrap concept the region was benign; under the ring's, it is risky.
    assert statistics.mean(before for before, _, _ in region) < 0.02
    assert statistics.mean(after for _, after, _ in region) > 0.4
    rings = [e for e in events if e.pattern == "fraud_ring"]
    assert rings and all(e.phase == "ring" for e in rings)
    assert all(e.transaction.event_time.hour < 7 for e in rings)
    # The bootstrap concept, a perfect model of the old world, loses its edge in the new one.
    drift = [(event, x) for event, x in observed(events) if event.phase == "ring"]
    truth = [e.is_fraud for e, _ in drift]
    stale = pr_auc(truth, [old.probability(x, e.transaction) for e, x in drift])
    fresh = pr_auc(truth, [e.fraud_probability for e, _ in drift])
    assert stale is not None and fresh is not None and stale < fresh - 0.1


def test_label_shift_raises_the_fraud_rate_with_the_same_concept_shape(
    surge: tuple[Simulator, list[SimulatedEvent]],
) -> None:
    simulator, events = surge
    rate = {
        phase: statistics.mean(e.is_fraud for e in events if e.phase == phase)
        for phase in ("bootstrap", "surge")
    }
    assert rate["surge"] > 2 * rate["bootstrap"]
    old, new = simulator.concept("bootstrap"), simulator.concept("surge")
    assert old.terms == new.terms
    shift = scenario("label-shift").phases[1].fraud.intercept_shift
    for event, x in list(observed(events))[:2000]:
        assert new.logit(x, event.transaction) == pytest.approx(
            old.logit(x, event.transaction) + shift
        )


def test_an_unknown_concept_term_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed: .*fraud_ring"):
        Concept(["amount_spike", "telepathy"])


def test_runs_over_different_spans_never_share_an_event_id() -> None:
    scenario = load_scenario(Path(__file__).resolve().parents[4] / "scenarios" / "baseline.yaml")
    first = scenario.start
    a = Simulator(scenario, start=first, until=first + timedelta(hours=2))
    b = Simulator(
        scenario, start=first + timedelta(days=4), until=first + timedelta(days=4, hours=2)
    )
    ids_a = {e.transaction.event_id for e in a.events()}
    ids_b = {e.transaction.event_id for e in b.events()}
    assert ids_a and ids_b and not ids_a & ids_b
    again = {
        e.transaction.event_id
        for e in Simulator(scenario, start=first, until=first + timedelta(hours=2)).events()
    }
    assert again == ids_a


def test_a_run_can_start_from_cards_that_already_have_a_past() -> None:
    baseline = scenario("baseline")
    history = list(Simulator(baseline, until=baseline.start + timedelta(hours=6)).events())
    past = CardAggregator()
    for e in history:
        past.apply(e.transaction)
    later = baseline.start + timedelta(days=1)
    run = Simulator(
        baseline, start=later, until=later + timedelta(hours=1), cards=lambda: copy.deepcopy(past)
    )
    events = list(run.events())
    first = next(e for e in events if past.current(e.transaction.card_id) is not None)
    card = past.current(first.transaction.card_id)
    assert card is not None
    x = request_features(first.transaction, card.features(), None)
    assert x["txn_count_7d"] >= 1
    assert first.fraud_probability == run.concept(first.phase).probability(x, first.transaction)
    # Each run starts from the same past: the aggregator handed in is copied, not consumed.
    assert [e.fraud_probability for e in run.events()] == [e.fraud_probability for e in events]
