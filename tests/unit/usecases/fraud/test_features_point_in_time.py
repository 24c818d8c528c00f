"""Point-in-time correctness of training sets, on a hand-made timeline, through real Feast
(files in a temporary folder; no services)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from bottega.events import Label, Transaction
from bottega.features import training_set
from bottega.settings import BottegaSettings
from bottega.usecases.fraud.aggregates import DAY, HOUR, RETENTION_S, CardAggregator
from bottega.usecases.fraud.features.request import MERCHANT_PRIOR_FRAUD_RATE, NO_PREVIOUS_TXN_S
from bottega.usecases.fraud.store import FraudFeatureStore, aggregate_batch
from bottega.usecases.fraud.tables import BACKFILL, MERCHANT_FEATURES

T0 = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 3, 3, tzinfo=UTC)


def txn(card: str, minutes: int, amount: float, device: str = "dev-1") -> Transaction:
    return Transaction(
        event_id=uuid.uuid4(),
        event_time=T0 + timedelta(minutes=minutes),
        card_id=card,
        merchant_id="m-1",
        amount=amount,
        merchant_category="grocery",
        country="FR",
        card_country="FR",
        device_id=device,
    )


# In the order the ingest receives them: the one at minute 40 arrives after the one at 50.
ARRIVALS = [
    txn("card-a", 0, 10.0),
    txn("card-a", 30, 20.0),
    txn("card-a", 50, 5.0, device="dev-2"),
    txn("card-a", 40, 7.0),
    txn("card-b", 65, 99.0),
    txn("card-a", 70, 3.0),
]
UNLABELLED = ARRIVALS[1].event_id


@pytest.fixture()
def store(tmp_path: Path) -> FraudFeatureStore:
    settings = BottegaSettings(_env_file=None, home=tmp_path / "home")  # type: ignore[call-arg]
    fs = FraudFeatureStore(settings)
    fs.apply()
    aggregator = CardAggregator()
    for event in ARRIVALS:  # one micro-batch each, so a correction is written after the original
        fs.write_batch(aggregate_batch(aggregator, [(event, BACKFILL)]))
    fs.write_labels(
        [
            (
                Label(
                    transaction_id=t.event_id,
                    card_id=t.card_id,
                    is_fraud=i % 2 == 0,
                    transaction_time=t.event_time,
                    event_time=t.event_time + timedelta(days=2),
                ),
                BACKFILL,
            )
            for i, t in enumerate(ARRIVALS)
            if t.event_id != UNLABELLED
        ]
    )
    now = datetime.now(UTC)
    fs.merchant_features.write(
        pa.table(
            {
                "merchant_id": ["m-1", "m-1"],
                "event_timestamp": [
                    MIDNIGHT,
                    MIDNIGHT + timedelta(days=1),
                ],  # the second is the future
                "created_timestamp": [now, now],
                "merchant_txn_count_30d": [9, 500],
                "merchant_fraud_rate_30d": [0.2, 0.9],
            },
            schema=MERCHANT_FEATURES,
        )
    )
    return fs


def expected_card(event: Transaction) -> dict[str, float] | None:
    """What the ingest knew about the card when ``event`` was scored: every event that had
    arrived before it and happened before it, aggregated as of the newest of those."""
    k = ARRIVALS.index(event)
    history = [
        t for t in ARRIVALS[:k] if t.card_id == event.card_id and t.event_time < event.event_time
    ]
    if not history:
        return None
    end = max(t.event_time for t in history).timestamp()

    def window(width: float) -> list[Transaction]:
        return [t for t in history if end - width < t.event_time.timestamp() <= end]

    week = window(RETENTION_S)
    return {
        "txn_count_1h": len(window(HOUR)),
        "amount_sum_1h": sum(t.amount for t in window(HOUR)),
        "txn_count_24h": len(window(DAY)),
        "amount_sum_24h": sum(t.amount for t in window(DAY)),
        "amount_mean_7d": sum(t.amount for t in week) / len(week),
        "log_seconds_since_last": math.log1p(event.event_time.timestamp() - end),
    }


def test_every_feature_stands_strictly_before_its_event(store: FraudFeatureStore) -> None:
    frame = training_set(T0, T0 + timedelta(hours=3), store=store)
    by_id = frame.set_index("event_id")
    labelled = [t for t in ARRIVALS if t.event_id != UNLABELLED]
    assert sorted(by_id.index) == sorted(str(t.event_id) for t in labelled)
    for event in labelled:
        row = by_id.loc[str(event.event_id)]
        expected = expected_card(event)
        if expected is None:
            assert row["txn_count_1h"] == 0 and row["amount_mean_7d"] == 0
            assert row["log_seconds_since_last"] == pytest.approx(math.log1p(NO_PREVIOUS_TXN_S))
            continue
        for name, value in expected.items():
            assert row[name] == pytest.approx(value), (event.event_time, name)


def test_the_late_event_and_its_correction(store: FraudFeatureStore) -> None:
    by_id = training_set(T0, T0 + timedelta(hours=3), store=store).set_index("event_id")
    at_50, late_40, at_70 = (by_id.loc[str(ARRIVALS[i].event_id)] for i in (2, 3, 5))
    # Scored at 50, before the one at 40 arrived: 0 and 30 only.
    assert at_50["txn_count_1h"] == 2
    # The late one at 40 sees 0 and 30, not 50, which happened after it.
    assert late_40["txn_count_1h"] == 2 and late_40["amount_sum_1h"] == 30.0
    # At 70 the correction stamped at 50 counts 0, 30, 40 and 50 in (22:50, 23:50].
    assert at_70["txn_count_1h"] == 4 and at_70["amount_sum_1h"] == 42.0
    assert at_70["device_changed"] == 1.0  # dev-1 after dev-2


def test_merchant_snapshots_are_used_only_after_their_time(store: FraudFeatureStore) -> None:
    by_id = training_set(T0, T0 + timedelta(hours=3), store=store).set_index("event_id")
    before_midnight = by_id.loc[str(ARRIVALS[0].event_id)]
    after_midnight = by_id.loc[str(ARRIVALS[4].event_id)]
    assert before_midnight["merchant_fraud_rate_30d"] == MERCHANT_PRIOR_FRAUD_RATE
    assert after_midnight["merchant_fraud_rate_30d"] == 0.2
    assert after_midnight["merchant_txn_count_30d"] == 9
    assert (by_id["merchant_fraud_rate_30d"] < 0.9).all(), "a future snapshot leaked"


def test_no_row_is_dropped_silently(store: FraudFeatureStore) -> None:
    everything = training_set(T0, T0 + timedelta(hours=3), store=store, labelled_only=False)
    assert len(everything) == len(ARRIVALS)
    assert everything["is_fraud"].isna().sum() == 1
    assert everything.loc[everything["card_id"] == "card-b", "txn_count_1h"].tolist() == [0]


def test_labels_that_arrive_later_are_hidden(store: FraudFeatureStore) -> None:
    early = training_set(
        T0, T0 + timedelta(hours=3), store=store, labels_as_of=T0 + timedelta(days=2, minutes=35)
    )
    assert len(early) == 1  # only the label for minute 0 had arrived by then
