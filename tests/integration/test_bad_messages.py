"""Bad messages on the real broker: wrong schema, wrong types, huge, empty, non-UTF-8. The
stack's ingest and monitor dead-letter each one, count it, and carry on with the good message
that follows: nothing is stuck behind a poison message, whatever its size.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client.parser import text_string_to_metric_families

from bottega.events import Label, ModelEvent, Prediction, dlq_topic
from bottega.settings import KafkaSettings
from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings
from bottega.usecases.fraud.store import FraudFeatureStore

from .conftest import wait_for
from .test_ingest import make_events, offline_count


@pytest.fixture()
def store(stack: LocalStack, stack_settings: StackSettings) -> FraudFeatureStore:
    return FraudFeatureStore(stack_settings)


# The producer's default max_request_size: the largest record a client sends.
MAX_REQUEST = 1024 * 1024


def good_transaction() -> dict[str, object]:
    return json.loads(make_events(1)[0].to_bytes())


def largest_value(key: bytes) -> int:
    """The largest value a producer can send with ``key`` and no headers: its copy in the DLQ,
    which carries headers, is over the limit."""
    size = MAX_REQUEST
    while DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"x" * size, []) > MAX_REQUEST:
        size -= 16
    return size


def transaction_poison(key: bytes) -> dict[str, bytes | None]:
    """Each kind of bad message on ``transactions``, by what is wrong with it."""
    good = good_transaction()
    label = Label(
        transaction_id=uuid.uuid4(),
        card_id="c",
        is_fraud=False,
        transaction_time=datetime.now(UTC),
    )
    return {
        "a label on the transactions topic": label.to_bytes(),
        "an unknown field": json.dumps({**good, "admin": True}).encode(),
        "a missing field": json.dumps({k: v for k, v in good.items() if k != "card_id"}).encode(),
        "amount as text": json.dumps({**good, "amount": "lots"}).encode(),
        "a negative amount": json.dumps({**good, "amount": -5}).encode(),
        "a NaN amount": json.dumps({**good, "amount": "NaN"}).encode(),
        "event_time not a time": json.dumps({**good, "event_time": "yesterday"}).encode(),
        "event_time without a zone": json.dumps(
            {**good, "event_time": "2030-01-01T00:00:00"}
        ).encode(),
        "an unknown channel": json.dumps({**good, "channel": 7}).encode(),
        "a JSON array": b"[1, 2, 3]",
        "JSON null": b"null",
        "truncated JSON": json.dumps(good).encode()[:40],
        "an empty value": b"",
        "no value (a tombstone)": None,
        "non-UTF-8 bytes": b"\xff\xfe\x00\x81",
        "Latin-1 text": json.dumps(
            {**good, "merchant_category": "caf\u00e9"}, ensure_ascii=False
        ).encode("latin-1"),
        "a valid event padded to 200 kB": json.dumps({**good, "device_id": "d" * 200_000}).encode(),
        "1 MiB of garbage, the most a producer sends": b"x" * largest_value(key),
    }


def send_raw(kafka: KafkaSettings, topic: str, values: list[bytes | None], key: bytes) -> None:
    """Send raw values, a tombstone (None) included, through kafka-python itself."""
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    try:
        for value in values:
            producer.send(topic, value=value, key=key)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def dead_letters(
    kafka: KafkaSettings, topic: str, key: bytes
) -> list[tuple[bytes, dict[str, str]]]:
    """What ``<topic>.dlq`` holds under ``key``: each value and its headers."""
    reader = KafkaConsumer(
        dlq_topic(topic),
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        return [(m.value, {k: v.decode() for k, v in m.headers}) for m in reader if m.key == key]
    finally:
        reader.close()


def metric(url: str, name: str, labels: dict[str, str]) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def dead_lettered(url: str, topic: str) -> Callable[[], float]:
    return lambda: metric(
        url, "bottega_bus_messages_total", {"topic": topic, "outcome": "dead_lettered"}
    )


def test_every_bad_transaction_is_dead_lettered_and_the_next_good_one_lands(
    kafka: KafkaSettings,
    store: FraudFeatureStore,
    stack_settings: StackSettings,
) -> None:
    key = uuid.uuid4().hex.encode()
    poison = transaction_poison(key)
    counted = dead_lettered(stack_settings.ingest.url, "transactions")
    before = counted()
    after_poison = make_events(3)
    # The good events share the poison's key, so its partition: nothing may hold them up.
    send_raw(kafka, "transactions", [*poison.values(), *(e.to_bytes() for e in after_poison)], key)
    wait_for(
        lambda: offline_count(store, after_poison)[1] == 3,
        timeout_s=120,
        what="the good transactions after the poison",
    )
    wait_for(lambda: counted() >= before + len(poison), timeout_s=30, what="the DLQ count")

    dead = dead_letters(kafka, "transactions", key)
    by_group = [d for d in dead if d[1]["bottega.consumer.group"] == "bottega-ingest"]
    assert len(by_group) == len(poison), [h["bottega.error"] for _, h in by_group]
    for (value, headers), (what, sent) in zip(by_group, poison.items(), strict=True):
        assert headers["bottega.source.topic"] == "transactions", what
        assert headers["bottega.error"].startswith("Transaction: "), (what, headers)
        sent = sent or b""
        if len(sent) > 64 * 1024:
            assert "bytes, over the limit of" in headers["bottega.error"], (what, headers)
        if len(sent) < MAX_REQUEST // 2:
            assert value == sent, what
        else:
            # Too big to copy whole with the headers: its start, and its size in a header.
            assert headers["bottega.truncated_from"] == str(len(sent)), what
            assert len(value) < len(sent) and sent.startswith(value), what
    assert offline_count(store, after_poison) == (3, 3)


def test_bad_labels_are_dead_lettered_by_both_consumers_and_good_ones_land(
    kafka: KafkaSettings,
    store: FraudFeatureStore,
    stack_settings: StackSettings,
) -> None:
    key = uuid.uuid4().hex.encode()
    txn = make_events(1)[0]
    good = Label(
        transaction_id=txn.event_id,
        card_id=txn.card_id,
        is_fraud=True,
        transaction_time=txn.event_time,
        event_time=txn.event_time + timedelta(hours=1),
    )
    fields = json.loads(good.to_bytes())
    poison = [
        json.dumps({**fields, "is_fraud": "maybe"}).encode(),
        json.dumps({k: v for k, v in fields.items() if k != "transaction_id"}).encode(),
        json.dumps({**fields, "transaction_id": "not-a-uuid"}).encode(),
        b"\xc3\x28",
        txn.to_bytes(),
    ]
    ingest = dead_lettered(stack_settings.ingest.url, "labels")
    monitor = dead_lettered(stack_settings.monitor.url, "labels")
    before = ingest(), monitor()
    labels_seen = lambda: metric(  # noqa: E731
        stack_settings.monitor.url, "bottega_monitor_events_total", {"kind": "label"}
    )
    seen_before = labels_seen()
    send_raw(kafka, "labels", [*poison, good.to_bytes()], key)

    def stored() -> int:
        return store.labels.query(
            "SELECT count(*) AS n FROM t WHERE event_id = ?", [str(good.event_id)]
        )["n"][0].as_py()

    wait_for(lambda: stored() == 1, timeout_s=120, what="the good label in the store")
    wait_for(lambda: labels_seen() > seen_before, timeout_s=60, what="the monitor's good label")
    wait_for(
        lambda: ingest() >= before[0] + len(poison) and monitor() >= before[1] + len(poison),
        timeout_s=30,
        what="both consumers' DLQ counts",
    )
    dead = dead_letters(kafka, "labels", key)
    groups = sorted({h["bottega.consumer.group"] for _, h in dead})
    assert len(dead) == 2 * len(poison), groups
    assert all(h["bottega.error"].startswith("Label") for _, h in dead)


def test_bad_predictions_and_model_events_are_dead_lettered_by_the_monitor(
    kafka: KafkaSettings, stack_settings: StackSettings
) -> None:
    key = uuid.uuid4().hex.encode()
    good = Prediction(
        transaction_id=uuid.uuid4(),
        card_id="card-poison-test",
        model_name="fraud-detector",
        model_version="1",
        score=0.2,
        threshold=0.5,
        decision=False,
        latency_ms=1.0,
    )
    fields = json.loads(good.to_bytes())
    predictions = [
        json.dumps({**fields, "score": 1.5}).encode(),
        json.dumps({**fields, "arm": "canary"}).encode(),
        json.dumps({**fields, "features": {"amount": [1, 2]}}).encode(),
        json.dumps({**fields, "features": {f"f{i}": i for i in range(20_000)}}).encode(),
        b"\x00\x01\x02",
    ]
    model_events = [
        json.dumps(
            {
                **json.loads(ModelEvent(model_name="m", version="1", action="promoted").to_bytes()),
                "action": "deleted",
            }
        ).encode(),
        b"{}",
    ]
    url = stack_settings.monitor.url
    seen = lambda: metric(url, "bottega_monitor_events_total", {"kind": "prediction_champion"})  # noqa: E731
    before = (
        dead_lettered(url, "predictions")(),
        dead_lettered(url, "model-events")(),
        seen(),
    )
    send_raw(kafka, "predictions", [*predictions, good.to_bytes()], key)
    send_raw(kafka, "model-events", model_events, key)
    wait_for(lambda: seen() > before[2], timeout_s=60, what="the good prediction")
    wait_for(
        lambda: (
            dead_lettered(url, "predictions")() >= before[0] + len(predictions)
            and dead_lettered(url, "model-events")() >= before[1] + len(model_events)
        ),
        timeout_s=30,
        what="the monitor's DLQ counts",
    )
    assert [v for v, _ in dead_letters(kafka, "predictions", key)] == predictions
    assert [v for v, _ in dead_letters(kafka, "model-events", key)] == model_events
