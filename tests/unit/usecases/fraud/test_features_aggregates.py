"""The one aggregation function: windows, duplicates, late events, and the two paths agreeing."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bottega.events import Transaction
from bottega.usecases.fraud.aggregates import (
    DAY,
    HOUR,
    RETENTION_S,
    CardAggregator,
    CardRow,
    Outcome,
)
from bottega.usecases.fraud.store import aggregate_batch
from bottega.usecases.fraud.tables import BACKFILL

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def txn(
    minutes: float,
    amount: float = 10.0,
    card: str = "card-1",
    merchant: str = "m-1",
    device: str | None = "dev-1",
    rng: random.Random | None = None,
) -> Transaction:
    event_id = uuid.UUID(int=(rng or random).getrandbits(128), version=4)
    return Transaction(
        event_id=event_id,
        event_time=T0 + timedelta(minutes=minutes),
        card_id=card,
        merchant_id=merchant,
        amount=amount,
        merchant_category="grocery",
        country="FR",
        card_country="FR",
        device_id=device,
    )


def brute_force(history: list[Transaction], as_of: datetime) -> dict[str, float]:
    """Aggregates over (as_of - w, as_of], by scanning every event."""
    end = as_of.timestamp()

    def within(width: float) -> list[Transaction]:
        return [t for t in history if end - width < t.event_time.timestamp() <= end]

    week = within(RETENTION_S)
    return {
        "txn_count_1h": len(within(HOUR)),
        "amount_sum_1h": sum(t.amount for t in within(HOUR)),
        "txn_count_24h": len(within(DAY)),
        "amount_sum_24h": sum(t.amount for t in within(DAY)),
        "txn_count_7d": len(week),
        "amount_mean_7d": sum(t.amount for t in week) / len(week) if week else 0.0,
        "distinct_merchants_24h": len({t.merchant_id for t in within(DAY)}),
        "last_txn_epoch_s": end,
    }


def numeric(row: CardRow) -> dict[str, float]:
    values = row.features()
    values.pop("last_device_id")
    return values


def test_windows_on_a_hand_made_timeline() -> None:
    agg = CardAggregator()
    timeline = [
        txn(0, 10, merchant="m-1"),
        txn(30, 20, merchant="m-2"),
        txn(59, 5, merchant="m-1"),
        txn(61, 40, merchant="m-3"),
        txn(60 * 26, 100, merchant="m-4"),
    ]
    rows = [agg.apply(t)[1] for t in timeline]
    assert all(r is not None for r in rows)
    r3 = rows[3]
    assert r3 is not None
    # At 10:01 the 1 h window (09:01, 10:01] holds 09:30, 09:59 and 10:01.
    assert (r3.txn_count_1h, r3.amount_sum_1h) == (3, 65.0)
    assert (r3.txn_count_24h, r3.amount_sum_24h) == (4, 75.0)
    assert r3.distinct_merchants_24h == 3
    assert r3.amount_mean_7d == pytest.approx(75.0 / 4)
    r4 = rows[4]
    assert r4 is not None
    # A day later only the new one is in the day's window; the week still has all five.
    assert (r4.txn_count_24h, r4.txn_count_7d) == (1, 5)
    assert r4.as_of == T0 + timedelta(minutes=60 * 26)


def test_random_streams_match_a_brute_force_scan() -> None:
    rng = random.Random(3)
    agg = CardAggregator()
    history: dict[str, list[Transaction]] = {}
    minute = 0.0
    for _ in range(1500):
        minute += rng.expovariate(1 / 40)
        card = f"card-{rng.randrange(5)}"
        t = txn(
            minute,
            round(rng.lognormvariate(3, 1), 2),
            card=card,
            merchant=f"m-{rng.randrange(30)}",
            rng=rng,
        )
        outcome, row = agg.apply(t)
        assert outcome is Outcome.APPLIED and row is not None
        history.setdefault(card, []).append(t)
        expected = brute_force(history[card], t.event_time)
        got = numeric(row)
        assert got == pytest.approx(expected), (card, minute)
    assert minute > 7 * 24 * 60 * 2, "the stream must outlive the retention to test expiry"


def test_the_same_event_id_never_counts_twice() -> None:
    agg = CardAggregator()
    first = txn(0, 10)
    agg.apply(first)
    again = first.model_copy()
    outcome, row = agg.apply(again)
    assert outcome is Outcome.DUPLICATE and row is None
    current = agg.current("card-1")
    assert current is not None and current.txn_count_1h == 1


def test_a_late_event_counts_and_yields_a_correction_at_the_latest_time() -> None:
    agg = CardAggregator()
    agg.apply(txn(0, 10))
    agg.apply(txn(50, 20, device="dev-2"))
    outcome, row = agg.apply(txn(20, 5, device="dev-9"))
    assert outcome is Outcome.LATE and row is not None
    assert row.as_of == T0 + timedelta(minutes=50)
    assert (row.txn_count_1h, row.amount_sum_1h) == (3, 35.0)
    assert row.last_device_id == "dev-2", "a late event does not change the newest device"


def test_an_event_older_than_the_retention_is_dropped() -> None:
    agg = CardAggregator()
    agg.apply(txn(60 * 24 * 8, 10))
    outcome, row = agg.apply(txn(0, 10))
    assert outcome is Outcome.TOO_LATE and row is None


def stream(n: int, seed: int) -> list[Transaction]:
    rng = random.Random(seed)
    minute, out = 0.0, []
    for _ in range(n):
        minute += rng.expovariate(1 / 3)
        out.append(
            txn(
                minute,
                round(rng.lognormvariate(3, 1), 2),
                card=f"card-{rng.randrange(40)}",
                merchant=f"m-{rng.randrange(25)}",
                device=f"dev-{rng.randrange(3)}",
                rng=rng,
            )
        )
    return out


def test_backfill_and_ingest_paths_give_identical_rows() -> None:
    events = stream(4000, seed=11)
    # Backfill: one big chunk.
    backfill = aggregate_batch(CardAggregator(), [(t, BACKFILL) for t in events]).rows
    # Ingest: micro-batches of random sizes, each shuffled as partitions may interleave.
    rng = random.Random(5)
    agg, ingest, i = CardAggregator(), [], 0
    while i < len(events):
        size = rng.randint(1, 300)
        batch = [(t, BACKFILL) for t in events[i : i + size]]
        rng.shuffle(batch)
        ingest += aggregate_batch(agg, batch).rows
        i += size
    assert ingest == backfill
    assert len(backfill) == len(events)


def test_replaying_a_batch_after_a_crash_writes_nothing_twice() -> None:
    events = stream(500, seed=2)
    agg = CardAggregator()
    first = aggregate_batch(agg, [(t, BACKFILL) for t in events[:300]])
    replay = aggregate_batch(agg, [(t, BACKFILL) for t in events[200:500]])
    assert replay.outcomes[Outcome.DUPLICATE] == 100
    assert len(first.logged) + len(replay.logged) == 500
    logged = [t.event_id for t, _ in first.logged + replay.logged]
    assert len(set(logged)) == 500


def test_recovery_rebuilds_each_card_from_its_own_recent_history(tmp_path: object) -> None:
    from pathlib import Path

    from bottega.settings import BottegaSettings
    from bottega.usecases.fraud.store import FraudFeatureStore

    settings = BottegaSettings(_env_file=None, home=Path(str(tmp_path)) / "home")  # type: ignore[call-arg]
    fs = FraudFeatureStore(settings)
    fs.apply()
    # card-early's events are a year older than card-late's: a rebuild that measured its span
    # from the log's newest event would forget card-early entirely.
    early = [txn(i, 10.0, card="card-early") for i in range(5)]
    late = [txn(60 * 24 * 365 + i, 20.0, card="card-late") for i in range(3)]
    fs.write_batch(aggregate_batch(CardAggregator(), [(t, BACKFILL) for t in early + late]))
    rebuilt = fs.recover().aggregator
    for card, expected in (("card-early", 5), ("card-late", 3)):
        row = rebuilt.current(card)
        assert row is not None and row.txn_count_1h == expected
    outcome, _ = rebuilt.apply(early[0])
    assert outcome is Outcome.DUPLICATE
