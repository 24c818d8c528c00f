"""The ingest on the real broker and a real Feast store: exactly once, right aggregates, DLQ,
and recovery from SIGKILL."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from kafka import KafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from bottega.bus import Producer
from bottega.events import Label, Transaction, dlq_topic
from bottega.settings import KafkaSettings
from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings
from bottega.usecases.fraud.aggregates import CARD_FEATURES, CardAggregator, CardRow
from bottega.usecases.fraud.scenario import load_scenario
from bottega.usecases.fraud.simulator import Simulator
from bottega.usecases.fraud.store import FraudFeatureStore, aggregate_batch, newest_per_card
from bottega.usecases.fraud.tables import BACKFILL

from .conftest import wait_for

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def make_events(n: int, *, scenario: str = "baseline") -> list[Transaction]:
    """The first ``n`` simulated transactions of a scenario, over a span no other test uses.

    Card ids get a prefix of this run, so that each test's cards are its own and the ingest's
    state for them holds nothing but these events.
    """
    loaded = load_scenario(SCENARIOS / f"{scenario}.yaml")
    start = loaded.start + timedelta(days=random.randrange(1, 10_000))
    run = uuid.uuid4().hex[:6]
    out: list[Transaction] = []
    for event in Simulator(loaded, start=start).events():
        out.append(
            event.transaction.model_copy(
                update={"card_id": f"{run}-card-{event.transaction.card_id}"}
            )
        )
        if len(out) == n:
            return out
    raise AssertionError(f"{scenario} has fewer than {n} transactions")


def publish(kafka: KafkaSettings, events: list[Any]) -> None:
    with Producer(kafka, client_id="test-replay") as producer:
        for event in events:
            producer.publish(event)
        producer.flush(timeout=60)


@pytest.fixture()
def fs(stack: LocalStack, stack_settings: StackSettings) -> FraudFeatureStore:
    return FraudFeatureStore(stack_settings)


def offline_count(fs: FraudFeatureStore, events: list[Transaction]) -> tuple[int, int]:
    prefix = events[0].card_id.split("-card-")[0]
    row = fs.transactions.query(
        "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM t WHERE card_id LIKE ?",
        [f"{prefix}-%"],
    ).to_pylist()[0]
    return row["n"], row["d"]


def expected_newest(events: list[Transaction]) -> dict[str, CardRow]:
    result = aggregate_batch(CardAggregator(), [(t, BACKFILL) for t in events])
    return {row.card_id: row for row in newest_per_card(result.rows)}


def online_matches(fs: FraudFeatureStore, expected: dict[str, CardRow]) -> bool:
    cards = sorted(expected)
    online = fs.online_card_rows(cards)
    for card, got in zip(cards, online, strict=True):
        want = expected[card].features()
        for name in CARD_FEATURES:
            value = got[name]
            if isinstance(want[name], float):
                if value is None or abs(value - want[name]) > 1e-6 * max(1.0, abs(want[name])):
                    return False
            elif value != want[name]:
                return False
    return True


def ingest_metric(settings: StackSettings, name: str, labels: dict[str, str]) -> float:
    text = httpx.get(f"{settings.ingest.url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_every_event_lands_offline_once_and_online_matches_the_aggregation(
    kafka: KafkaSettings, fs: FraudFeatureStore
) -> None:
    events = make_events(3000)
    publish(kafka, events)
    wait_for(
        lambda: offline_count(fs, events)[1] == len(events),
        timeout_s=120,
        what="every event in the offline store",
    )
    assert offline_count(fs, events) == (len(events), len(events))
    expected = expected_newest(events)
    wait_for(
        lambda: online_matches(fs, expected),
        timeout_s=60,
        what="online values to match the aggregation function",
    )

    # The same events through the backfill path give the same rows as the ingest wrote.
    ids = [str(t.event_id) for t in events]
    ingested = fs.card_features.query(
        "SELECT * EXCLUDE (created_timestamp) FROM t WHERE event_id IN (SELECT unnest(?)) "
        "ORDER BY event_timestamp, event_id",
        [ids],
    ).to_pylist()
    backfilled = aggregate_batch(CardAggregator(), [(t, BACKFILL) for t in events]).rows
    assert len(ingested) == len(backfilled) == len(events)
    by_event = {row["event_id"]: row for row in ingested}
    for row in backfilled:
        got = by_event[row.event_id]
        assert got["card_id"] == row.card_id and got["event_timestamp"] == row.as_of
        assert {k: got[k] for k in CARD_FEATURES} == pytest.approx(row.features())


def test_labels_land_once(kafka: KafkaSettings, fs: FraudFeatureStore) -> None:
    events = make_events(50)
    labels = [
        Label(
            transaction_id=t.event_id,
            card_id=t.card_id,
            is_fraud=i % 7 == 0,
            transaction_time=t.event_time,
            event_time=t.event_time + timedelta(days=1),
        )
        for i, t in enumerate(events)
    ]
    publish(kafka, labels + labels[:10])  # ten published twice, as a retrying producer might

    def written() -> int:
        return fs.labels.query(
            "SELECT count(*) AS n FROM t WHERE event_id IN (SELECT unnest(?))",
            [[str(lb.event_id) for lb in labels]],
        )["n"][0].as_py()

    wait_for(lambda: written() >= len(labels), timeout_s=60, what="labels offline")
    assert written() == len(labels)


def test_poison_goes_to_the_dlq_counted_and_ingest_carries_on(
    kafka: KafkaSettings, fs: FraudFeatureStore, stack_settings: StackSettings
) -> None:
    before = ingest_metric(
        stack_settings,
        "bottega_bus_messages_total",
        {"topic": "transactions", "outcome": "dead_lettered"},
    )
    key = uuid.uuid4().hex.encode()
    poison = [b"\xff\xfe\x00", b'{"card_id": "x"}', b"[1, 2, 3]"]
    after_poison = make_events(5)
    with Producer(kafka) as producer:
        for raw in poison:
            producer.send("transactions", raw, key=key)
        for event in after_poison:
            producer.publish(event)
        producer.flush(timeout=30)
    wait_for(
        lambda: offline_count(fs, after_poison)[1] == 5,
        timeout_s=60,
        what="the valid events after the poison",
    )
    wait_for(
        lambda: (
            ingest_metric(
                stack_settings,
                "bottega_bus_messages_total",
                {"topic": "transactions", "outcome": "dead_lettered"},
            )
            >= before + 3
        ),
        timeout_s=30,
        what="the dead-letter metric",
    )
    wait_for(
        lambda: (
            'bottega_ingest_consumer_lag_messages{topic="transactions"}'
            in httpx.get(f"{stack_settings.ingest.url}/metrics", timeout=5).text
        ),
        timeout_s=30,
        what="the consumer lag metric",
    )
    reader = KafkaConsumer(
        dlq_topic("transactions"),
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        dead = [m.value for m in reader if m.key == key]
    finally:
        reader.close()
    assert dead == poison


@pytest.fixture()
def restartable_ingest(stack: LocalStack) -> Iterator[LocalStack]:
    yield stack
    stack.up(["ingest"])  # whatever the test did, leave an ingest running


def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(
    kafka: KafkaSettings, fs: FraudFeatureStore, restartable_ingest: LocalStack
) -> None:
    stack = restartable_ingest
    events = make_events(40_000)
    sender = threading.Thread(target=publish, args=(kafka, events))
    sender.start()
    wait_for(lambda: offline_count(fs, events)[1] > 0, timeout_s=120, what="the first batch")
    record = stack.pid_file("ingest").read()
    assert record is not None
    psutil.Process(record.pid).kill()
    psutil.Process(record.pid).wait(timeout=10)
    killed_at = offline_count(fs, events)[1]
    sender.join(timeout=120)
    assert killed_at < len(events), "the kill must land mid-stream"

    report = stack.up(["ingest"])
    assert report.started == ["ingest"]
    wait_for(
        lambda: offline_count(fs, events)[1] == len(events),
        timeout_s=180,
        what="every event after the restart",
    )
    assert offline_count(fs, events) == (len(events), len(events))
    features = fs.card_features.query(
        "SELECT count(DISTINCT event_id) AS d, count(*) AS n FROM t WHERE card_id LIKE ?",
        [events[0].card_id.split("-card-")[0] + "-%"],
    ).to_pylist()[0]
    assert features == {"d": len(events), "n": len(events)}
    expected = expected_newest(events)  # once: recomputing 40,000 events each poll is slow
    wait_for(
        lambda: online_matches(fs, expected),
        timeout_s=180,
        what="online values after the restart",
    )
