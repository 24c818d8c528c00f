"""The bus against the real Apache Kafka broker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from bottega.bus import BusMetrics, Consumer, Envelope, Producer, create_topics
from bottega.events import Transaction, dlq_topic
from bottega.settings import KafkaSettings

from .conftest import wait_for


def txn(card: str, amount: float = 10.0) -> Transaction:
    return Transaction(
        card_id=card,
        merchant_id="m-1",
        amount=amount,
        merchant_category="grocery",
        country="FR",
        card_country="FR",
    )


def consume_until(consumer: Consumer, seen: list[Any], count: int, timeout_s: float = 60) -> None:
    def step() -> bool:
        consumer.poll_once(timeout_ms=500)
        return len(seen) >= count

    wait_for(step, timeout_s=timeout_s, what=f"{count} messages")


def committed(kafka: KafkaSettings, group: str, topic: str, partitions: int) -> dict[int, int]:
    probe = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        return {p: probe.committed(TopicPartition(topic, p)) or 0 for p in range(partitions)}
    finally:
        probe.close()


def test_create_topics_is_idempotent_and_sets_partitions(
    kafka: KafkaSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("t")
    assert create_topics(kafka, [topic, dlq_topic(topic)], partitions=4) == [
        topic,
        dlq_topic(topic),
    ]
    assert create_topics(kafka, [topic]) == []
    probe = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        assert probe.partitions_for_topic(topic) == {0, 1, 2, 3}
        assert probe.partitions_for_topic(dlq_topic(topic)) == {0}
    finally:
        probe.close()


def test_the_stack_created_the_bottega_topics(kafka: KafkaSettings) -> None:
    probe = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        topics = probe.topics()
        partitions = probe.partitions_for_topic("transactions") or set()
    finally:
        probe.close()
    for name in ("transactions", "labels", "predictions", "model-events"):
        assert name in topics and dlq_topic(name) in topics
    assert len(partitions) == kafka.partitions


def test_produce_and_consume_through_a_group(
    kafka: KafkaSettings, dead_letters: Producer, unique: Callable[[str], str]
) -> None:
    topic, group = unique("txn"), unique("g")
    create_topics(kafka, [topic, dlq_topic(topic)])
    sent = [txn(f"card-{i % 5}", amount=i + 1) for i in range(50)]
    with Producer(kafka) as producer:
        for event in sent:
            producer.publish(event, topic=topic)
        producer.flush(timeout=30)

    seen: list[Envelope[Any]] = []
    with Consumer(
        kafka,
        group_id=group,
        topics={topic: Transaction},
        handler=seen.extend,
        dead_letters=dead_letters,
    ) as consumer:
        consume_until(consumer, seen, 50)
    assert sorted(e.event.event_id for e in seen) == sorted(e.event_id for e in sent)
    # keyed by card: each card's events sit on one partition, in the order they were sent
    by_card: dict[str, set[int]] = {}
    for env in seen:
        by_card.setdefault(env.event.card_id, set()).add(env.partition)
    assert all(len(parts) == 1 for parts in by_card.values())
    for card in by_card:
        amounts = [
            e.event.amount for e in sorted(seen, key=lambda e: e.offset) if e.event.card_id == card
        ]
        assert amounts == sorted(amounts)
    assert sum(committed(kafka, group, topic, kafka.partitions).values()) == 50


def test_offsets_are_committed_only_after_the_handler_succeeds(
    kafka: KafkaSettings, dead_letters: Producer, unique: Callable[[str], str]
) -> None:
    topic, group = unique("txn"), unique("g")
    create_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    event = txn("card-1")
    with Producer(kafka) as producer:
        producer.publish(event, topic=topic).get(timeout=30)

    deliveries: list[str] = []

    def fails_once(batch: Sequence[Envelope[Any]]) -> None:
        deliveries.extend(str(e.event.event_id) for e in batch)
        if len(deliveries) == 1:
            raise RuntimeError("downstream store unavailable")

    with Consumer(
        kafka,
        group_id=group,
        topics={topic: Transaction},
        handler=fails_once,
        dead_letters=dead_letters,
        backoff_initial_s=0.1,
    ) as consumer:
        wait_for(lambda: consumer.poll_once(500).failed, timeout_s=60, what="the failed batch")
        assert committed(kafka, group, topic, 1) == {0: 0}
        consume_until(consumer, deliveries, 2)
    assert deliveries == [str(event.event_id)] * 2
    assert committed(kafka, group, topic, 1) == {0: 1}

    # a new member of the group starts after the commit: nothing is delivered a third time
    again: list[Any] = []
    with Consumer(
        kafka,
        group_id=group,
        topics={topic: Transaction},
        handler=again.extend,
        dead_letters=dead_letters,
    ) as consumer:
        for _ in range(6):
            consumer.poll_once(500)
    assert again == []


def test_a_poisoned_message_goes_to_the_dlq_and_the_consumer_carries_on(
    kafka: KafkaSettings, unique: Callable[[str], str]
) -> None:
    topic, group = unique("txn"), unique("g")
    create_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    registry = CollectorRegistry()
    metrics = BusMetrics(registry)
    before, after = txn("card-before"), txn("card-after")
    poison = [b"\xff\xfe not utf-8", b'{"card_id": "c"}', b"{}"]
    with Producer(kafka) as producer:
        producer.publish(before, topic=topic)
        for raw in poison:
            producer.send(topic, raw, key=b"card-x")
        producer.publish(after, topic=topic)
        producer.flush(timeout=30)

    seen: list[Envelope[Any]] = []
    with (
        Producer(kafka, metrics=metrics) as dlq,
        Consumer(
            kafka,
            group_id=group,
            topics={topic: Transaction},
            handler=seen.extend,
            dead_letters=dlq,
            metrics=metrics,
        ) as consumer,
    ):
        consume_until(consumer, seen, 2)
    assert [e.event.card_id for e in seen] == ["card-before", "card-after"]
    assert committed(kafka, group, topic, 1) == {0: 5}

    reader = KafkaConsumer(
        dlq_topic(topic),
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        dead = [reader.__next__() for _ in poison]
    finally:
        reader.close()
    assert [m.value for m in dead] == poison
    headers = [dict(m.headers) for m in dead]
    assert [h["bottega.source.offset"] for h in headers] == [b"1", b"2", b"3"]
    assert all(h["bottega.source.topic"] == topic.encode() for h in headers)
    assert b"merchant_id" in headers[1]["bottega.error"]
    assert (
        registry.get_sample_value(
            "bottega_bus_messages_total", {"topic": topic, "outcome": "dead_lettered"}
        )
        == 3
    )


def test_two_consumers_in_one_group_split_the_partitions(
    kafka: KafkaSettings, dead_letters: Producer, unique: Callable[[str], str]
) -> None:
    topic, group = unique("txn"), unique("g")
    create_topics(kafka, [topic, dlq_topic(topic)], partitions=4)
    seen_a: list[Envelope[Any]] = []
    seen_b: list[Envelope[Any]] = []
    a = Consumer(
        kafka,
        group_id=group,
        topics={topic: Transaction},
        handler=seen_a.extend,
        dead_letters=dead_letters,
        client_id="a",
    )
    b = Consumer(
        kafka,
        group_id=group,
        topics={topic: Transaction},
        handler=seen_b.extend,
        dead_letters=dead_letters,
        client_id="b",
    )
    stop = threading.Event()
    threads = [
        threading.Thread(target=c.run, args=(stop,), kwargs={"timeout_ms": 200}) for c in (a, b)
    ]
    try:
        for t in threads:
            t.start()
        wait_for(
            lambda: (
                len(a.assignment()) + len(b.assignment()) == 4 and a.assignment() and b.assignment()
            ),
            timeout_s=60,
            what="both members to hold partitions",
        )
        assert not a.assignment() & b.assignment()
        with Producer(kafka) as producer:
            for i in range(200):
                producer.publish(txn(f"card-{i}"), topic=topic)
            producer.flush(timeout=30)
        wait_for(lambda: len(seen_a) + len(seen_b) >= 200, timeout_s=60, what="200 messages")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        a.close()
        b.close()
    assert seen_a and seen_b
    assert len(seen_a) + len(seen_b) == 200
    assert {e.partition for e in seen_a}.isdisjoint({e.partition for e in seen_b})
