"""The bus's commit, retry and dead-letter rules, on in-memory fakes of kafka-python."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError
from prometheus_client import CollectorRegistry

from bottega.bus import BusMetrics, Consumer, Envelope, Producer
from bottega.bus.consumer import DLQ_VALUE_LIMIT
from bottega.bus.native import NativeProducer, ProducerFull
from bottega.bus.producer import connection_options
from bottega.events import Transaction
from bottega.settings import KafkaSettings


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class FakeFuture:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def add_callback(self, fn: Any) -> FakeFuture:
        if not self.fail:
            fn(None)
        return self

    def add_errback(self, fn: Any) -> FakeFuture:
        if self.fail:
            fn(RuntimeError("broker down"))
        return self

    def get(self, timeout: float | None = None) -> None:
        if self.fail:
            raise RuntimeError("broker down")


class FakeProducer:
    """Takes every message, or none (``fail``), or all but the ``fail_nth`` (counting from 1).
    It refuses the first ``refusals`` sends as kafka-python does while the broker is down: no
    metadata within ``max_block_ms``, so the message is never queued."""

    def __init__(self, fail: bool = False, fail_nth: int | None = None, refusals: int = 0) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]] | None]] = []
        self.fail = fail
        self.fail_nth = fail_nth
        self.refusals = refusals

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FakeFuture:
        if self.refusals:
            self.refusals -= 1
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")
        self.sent.append((topic, value, key, headers))
        return FakeFuture(self.fail or len(self.sent) == self.fail_nth)

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


class FakeConsumer:
    """One partition per topic, a log of records, a position and committed offsets."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.log: dict[TopicPartition, list[Record]] = defaultdict(list)
        for record in records:
            self.log[TopicPartition(record.topic, record.partition)].append(record)
        self.position = {tp: 0 for tp in self.log}
        self.committed: dict[TopicPartition, int] = {}

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        out = {}
        for tp, records in self.log.items():
            batch = records[self.position[tp] : self.position[tp] + (max_records or 500)]
            if batch:
                out[tp] = batch
                self.position[tp] += len(batch)
        return out

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.committed.update({tp: om.offset for tp, om in offsets.items()})

    def assignment(self) -> set[TopicPartition]:
        return set(self.log)

    def close(self, autocommit: bool = False) -> None: ...


def txn_bytes(card: str) -> bytes:
    return Transaction(
        card_id=card,
        merchant_id="m",
        amount=1.0,
        merchant_category="grocery",
        country="FR",
        card_country="FR",
    ).to_bytes()


def records(values: Sequence[bytes | None], topic: str = "transactions") -> list[Record]:
    return [Record(topic, 0, i, b"k", v) for i, v in enumerate(values)]


def make_consumer(
    fake: FakeConsumer,
    handler: Any,
    dlq: FakeProducer | None = None,
    registry: CollectorRegistry | None = None,
) -> tuple[Consumer, FakeProducer]:
    dlq = dlq or FakeProducer()
    metrics = BusMetrics(registry or CollectorRegistry())
    consumer = Consumer(
        KafkaSettings(),
        group_id="g",
        topics={"transactions": Transaction},
        handler=handler,
        dead_letters=Producer(KafkaSettings(), client=dlq, metrics=metrics),
        metrics=metrics,
        client=fake,
        backoff_initial_s=0.1,
        backoff_max_s=0.4,
    )
    return consumer, dlq


def test_commits_the_batch_after_the_handler_returns() -> None:
    fake = FakeConsumer(records([txn_bytes("a"), txn_bytes("b"), txn_bytes("c")]))
    seen: list[Envelope[Any]] = []
    consumer, _ = make_consumer(fake, seen.extend)
    result = consumer.poll_once()
    assert [env.event.card_id for env in seen] == ["a", "b", "c"]
    assert [env.offset for env in seen] == [0, 1, 2]
    assert fake.committed == {TopicPartition("transactions", 0): 3}
    assert result.consumed == 3 and not result.failed


def test_a_failing_handler_commits_nothing_and_gets_the_batch_again() -> None:
    fake = FakeConsumer(records([txn_bytes("a"), txn_bytes("b")]))
    calls: list[list[str]] = []

    def flaky(batch: Sequence[Envelope[Any]]) -> None:
        calls.append([env.event.card_id for env in batch])
        if len(calls) == 1:
            raise RuntimeError("feature store unavailable")

    consumer, _ = make_consumer(fake, flaky)
    first = consumer.poll_once()
    assert first.failed
    assert fake.committed == {}
    assert consumer.backoff_s == pytest.approx(0.1)
    second = consumer.poll_once()
    assert not second.failed
    assert calls == [["a", "b"], ["a", "b"]]
    assert fake.committed == {TopicPartition("transactions", 0): 2}
    assert consumer.backoff_s == 0


def test_backoff_doubles_up_to_its_cap() -> None:
    fake = FakeConsumer(records([txn_bytes("a")]))

    def always_fails(batch: Sequence[Envelope[Any]]) -> None:
        raise RuntimeError("down")

    consumer, _ = make_consumer(fake, always_fails)
    backoffs = []
    for _ in range(5):
        consumer.poll_once()
        backoffs.append(consumer.backoff_s)
    assert backoffs == pytest.approx([0.1, 0.2, 0.4, 0.4, 0.4])
    assert fake.committed == {}


def test_poisoned_messages_go_to_the_dlq_and_the_rest_are_handled() -> None:
    values: list[bytes | None] = [
        txn_bytes("a"),
        b"\xff\xfenot json",
        b'{"card_id": 3}',
        None,
        txn_bytes("b"),
    ]
    fake = FakeConsumer(records(values))
    seen: list[str] = []
    registry = CollectorRegistry()
    consumer, dlq = make_consumer(
        fake, lambda b: seen.extend(e.event.card_id for e in b), registry=registry
    )
    result = consumer.poll_once()
    assert seen == ["a", "b"]
    assert result.dead_lettered == 3
    assert [topic for topic, *_ in dlq.sent] == ["transactions.dlq"] * 3
    assert [value for _, value, _, _ in dlq.sent] == [b"\xff\xfenot json", b'{"card_id": 3}', b""]
    headers = dict(dlq.sent[1][3] or [])
    assert headers["bottega.source.topic"] == b"transactions"
    assert headers["bottega.source.offset"] == b"2"
    assert b"merchant_id" in headers["bottega.error"]
    assert fake.committed == {TopicPartition("transactions", 0): 5}
    dead = registry.get_sample_value(
        "bottega_bus_messages_total", {"topic": "transactions", "outcome": "dead_lettered"}
    )
    assert dead == 3


def test_a_huge_message_is_dead_lettered_unparsed_and_its_copy_fits() -> None:
    # A valid event, but over the size limit; and a megabyte of garbage, whose copy with the
    # DLQ's headers would be over the broker's limit if it were copied whole.
    padded = Transaction.model_validate_json(txn_bytes("a")).model_copy(
        update={"device_id": "d" * 70_000}
    )
    huge = b"x" * (1024 * 1024 - 100)
    fake = FakeConsumer(records([padded.to_bytes(), huge, txn_bytes("b")]))
    seen: list[str] = []
    consumer, dlq = make_consumer(fake, lambda b: seen.extend(e.event.card_id for e in b))
    result = consumer.poll_once()
    assert seen == ["b"] and result.dead_lettered == 2
    first, second = (dict(headers or []) for *_, headers in dlq.sent)
    assert (
        first["bottega.error"]
        == (
            f"Transaction: the message is {len(padded.to_bytes())} bytes, over the limit of 65536"
        ).encode()
    )
    assert dlq.sent[0][1] == padded.to_bytes() and "bottega.truncated_from" not in first
    assert second["bottega.truncated_from"] == str(len(huge)).encode()
    assert dlq.sent[1][1] == huge[:DLQ_VALUE_LIMIT]
    assert fake.committed == {TopicPartition("transactions", 0): 3}


def test_a_dlq_outage_blocks_the_commit() -> None:
    fake = FakeConsumer(records([txn_bytes("a"), b"garbage"]))
    consumer, _ = make_consumer(fake, lambda batch: None, dlq=FakeProducer(fail=True))
    result = consumer.poll_once()
    assert result.failed
    assert fake.committed == {}
    assert fake.position[TopicPartition("transactions", 0)] == 0


class LosesOneCommit(FakeConsumer):
    """The first commit fails as after a rebalance: the member gets its partition back from the
    last committed offset."""

    def __init__(self, records: Sequence[Record]) -> None:
        super().__init__(records)
        self.lost = False

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        if not self.lost:
            self.lost = True
            for tp in offsets:
                self.position[tp] = self.committed.get(tp, 0)
            raise CommitFailedError("the group rebalanced")
        super().commit(offsets)


def test_a_batch_consumed_again_does_not_dead_letter_twice() -> None:
    fake = LosesOneCommit(records([b"x", txn_bytes("a"), b"y"]))
    registry = CollectorRegistry()
    handled: list[str] = []
    consumer, dlq = make_consumer(
        fake, lambda b: handled.extend(e.event.card_id for e in b), registry=registry
    )
    consumer.poll_once()
    assert fake.committed == {}
    consumer.poll_once()
    assert handled == ["a", "a"]  # at least once for the good, at most once for the poison
    assert [value for _, value, _, _ in dlq.sent] == [b"x", b"y"]
    assert fake.committed == {TopicPartition("transactions", 0): 3}
    dead = registry.get_sample_value(
        "bottega_bus_messages_total", {"topic": "transactions", "outcome": "dead_lettered"}
    )
    assert dead == 2


def test_after_a_partial_dlq_failure_only_the_unsent_poison_is_sent_again() -> None:
    fake = FakeConsumer(records([b"x", b"y"]))
    # The broker takes the first dead letter, times out on the second, then takes them all.
    consumer, dlq = make_consumer(fake, lambda batch: None, dlq=FakeProducer(fail_nth=2))
    assert consumer.poll_once().failed
    assert fake.committed == {}
    assert not consumer.poll_once().failed
    assert [value for _, value, _, _ in dlq.sent] == [b"x", b"y", b"y"]
    assert fake.committed == {TopicPartition("transactions", 0): 2}


def test_a_batch_of_only_poison_still_commits() -> None:
    fake = FakeConsumer(records([b"x", b"y"]))
    handled: list[Any] = []
    consumer, dlq = make_consumer(fake, handled.append)
    consumer.poll_once()
    assert handled == []
    assert len(dlq.sent) == 2
    assert fake.committed == {TopicPartition("transactions", 0): 2}


def card_9_transaction() -> Transaction:
    return Transaction(
        card_id="card-9",
        merchant_id="m",
        amount=3.0,
        merchant_category="travel",
        country="DE",
        card_country="FR",
    )


def test_producer_keys_events_by_entity_and_counts() -> None:
    fake = FakeProducer()
    registry = CollectorRegistry()
    producer = Producer(KafkaSettings(), client=fake, metrics=BusMetrics(registry))
    txn = card_9_transaction()
    producer.publish(txn)
    producer.publish(txn, topic="elsewhere")
    assert [(t, k) for t, _, k, _ in fake.sent] == [
        ("transactions", b"card-9"),
        ("elsewhere", b"card-9"),
    ]
    assert Transaction.from_bytes(fake.sent[0][1]) == txn
    produced = registry.get_sample_value(
        "bottega_bus_messages_total", {"topic": "transactions", "outcome": "produced"}
    )
    assert produced == 1


def test_a_send_refused_while_the_broker_is_down_is_tried_again_and_sent_once() -> None:
    fake = FakeProducer(refusals=3)
    producer = Producer(KafkaSettings(outage_wait_s=60), client=fake)
    producer.publish(card_9_transaction()).get()
    assert [(t, k) for t, _, k, _ in fake.sent] == [("transactions", b"card-9")]
    assert fake.refusals == 0


def test_a_send_refused_past_the_outage_wait_raises() -> None:
    fake = FakeProducer(refusals=3)
    producer = Producer(KafkaSettings(), client=fake, outage_wait_s=0)
    with pytest.raises(KafkaTimeoutError):
        producer.publish(card_9_transaction())
    assert fake.sent == [] and fake.refusals == 2


def test_every_bus_client_caps_its_reconnection_backoff() -> None:
    options = connection_options(KafkaSettings(reconnect_backoff_max_ms=700), "a-client")
    assert options["reconnect_backoff_max_ms"] == 700
    assert KafkaSettings().reconnect_backoff_max_ms == 1000


class FakeRdKafka:
    """confluent-kafka's Producer: produce queues, poll reports (the last one as failed if told)."""

    def __init__(self, capacity: int = 10, fail_last: bool = False) -> None:
        self.capacity, self.fail_last = capacity, fail_last
        self.queued: list[tuple[str, bytes, bytes, Any]] = []

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        if len(self.queued) >= self.capacity:
            raise BufferError("Local: Queue full")
        self.queued.append((topic, value, key, on_delivery))

    def poll(self, timeout: float) -> int:
        reported, self.queued = self.queued, []
        for i, (topic, _, _, callback) in enumerate(reported):
            failed = self.fail_last and i == len(reported) - 1
            callback("broker down" if failed else None, FakeMessage(topic))
        return len(reported)

    def __len__(self) -> int:
        return len(self.queued)


@dataclass
class FakeMessage:
    name: str

    def topic(self) -> str:
        return self.name


def test_native_producer_keys_events_counts_outcomes_and_refuses_when_full() -> None:
    fake = FakeRdKafka(capacity=3, fail_last=True)
    registry = CollectorRegistry()
    outcomes: list[bool] = []
    producer = NativeProducer(
        KafkaSettings(), client=fake, metrics=BusMetrics(registry), on_delivery=outcomes.append
    )
    txn = card_9_transaction()
    for _ in range(3):
        producer.publish(txn)
    with pytest.raises(ProducerFull):
        producer.publish(txn)
    assert len(producer) == 3
    assert [(t, k) for t, _, k, _ in fake.queued] == [("transactions", b"card-9")] * 3
    assert Transaction.from_bytes(fake.queued[0][1]) == txn
    assert producer.poll(0) == 3
    assert outcomes == [True, True, False]

    def count(outcome: str) -> float | None:
        labels = {"topic": "transactions", "outcome": outcome}
        return registry.get_sample_value("bottega_bus_messages_total", labels)

    assert (count("produced"), count("produce_failed")) == (2, 1)


def test_native_producer_tells_each_message_its_outcome_and_sends_given_bytes() -> None:
    fake = FakeRdKafka(fail_last=True)
    overall: list[bool] = []
    producer = NativeProducer(
        KafkaSettings(),
        client=fake,
        metrics=BusMetrics(CollectorRegistry()),
        on_delivery=overall.append,
    )
    txn = card_9_transaction()
    each: list[tuple[str, bool]] = []
    producer.publish(txn, payload=txn.to_bytes(), then=lambda ok: each.append(("first", ok)))
    producer.publish(txn, then=lambda ok: each.append(("second", ok)))
    assert fake.queued[0][1] == txn.to_bytes() == fake.queued[1][1]
    producer.poll(0)
    assert each == [("first", True), ("second", False)]
    assert overall == [True, False]  # on_delivery still hears every outcome, first


def test_a_consumer_needs_topics() -> None:
    with pytest.raises(ValueError, match="topic"):
        Consumer(
            KafkaSettings(),
            group_id="g",
            topics={},
            handler=lambda b: None,
            dead_letters=Producer(KafkaSettings(), client=FakeProducer()),
            client=FakeConsumer([]),
        )


class TrickleConsumer(FakeConsumer):
    """Hands out at most ``per_poll`` records per poll, as a slow producer would."""

    def __init__(self, records: Sequence[Record], per_poll: int) -> None:
        super().__init__(records)
        self.per_poll = per_poll
        self.polls = 0

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        self.polls += 1
        return super().poll(timeout_ms, min(self.per_poll, max_records or self.per_poll))


def test_linger_fills_a_batch_from_several_polls() -> None:
    fake = TrickleConsumer(records([txn_bytes(str(i)) for i in range(10)]), per_poll=3)
    batches: list[int] = []
    consumer = Consumer(
        KafkaSettings(),
        group_id="g",
        topics={"transactions": Transaction},
        handler=lambda b: batches.append(len(b)),
        dead_letters=Producer(KafkaSettings(), client=FakeProducer()),
        client=fake,
        max_batch=7,
        linger_ms=10_000,
    )
    consumer.poll_once()
    assert batches == [7]  # 3 + 3 + 1: stopped at max_batch, never waited out the linger
    assert fake.committed == {TopicPartition("transactions", 0): 7}


def test_without_linger_a_batch_is_one_poll() -> None:
    fake = TrickleConsumer(records([txn_bytes(str(i)) for i in range(10)]), per_poll=3)
    batches: list[int] = []
    consumer = Consumer(
        KafkaSettings(),
        group_id="g",
        topics={"transactions": Transaction},
        handler=lambda b: batches.append(len(b)),
        dead_letters=Producer(KafkaSettings(), client=FakeProducer()),
        client=fake,
        max_batch=7,
    )
    consumer.poll_once()
    assert batches == [3] and fake.polls == 1


def test_run_calls_the_periodic_task_on_its_own_thread() -> None:
    import threading

    fake = FakeConsumer(records([txn_bytes("a")]))
    consumer, _ = make_consumer(fake, lambda batch: None)
    stop = threading.Event()
    seen: list[tuple[Consumer, str]] = []

    def tick(c: Consumer) -> None:
        seen.append((c, threading.current_thread().name))
        stop.set()

    runner = threading.Thread(
        target=consumer.run,
        args=(stop,),
        kwargs={"timeout_ms": 10, "every": (0.0, tick)},
        name="consumer",
    )
    runner.start()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert seen == [(consumer, "consumer")]
    assert fake.committed == {TopicPartition("transactions", 0): 1}


class PartlyRead:
    """What kafka-python knows after fetches: each partition's end and position, if fetched."""

    def __init__(
        self, ends: dict[TopicPartition, int | None], positions: dict[TopicPartition, int]
    ) -> None:
        self.ends, self.positions = ends, positions

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends[tp]

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        assert self.ends[tp] is not None, "no position asked of a partition never fetched"
        return self.positions[tp]


def test_unread_names_the_partitions_behind_their_backlog_or_not_fetched_yet() -> None:
    read, behind, unfetched, other = (
        TopicPartition("predictions", 0),
        TopicPartition("predictions", 1),
        TopicPartition("predictions", 2),
        TopicPartition("model-events", 0),
    )
    client = PartlyRead(
        {read: 10, behind: 10, unfetched: None, other: 5}, {read: 10, behind: 4, other: 0}
    )
    consumer = Consumer(
        KafkaSettings(),
        group_id="g",
        topics={"predictions": Transaction, "model-events": Transaction},
        handler=lambda batch: None,
        dead_letters=Producer(KafkaSettings(), client=FakeProducer()),
        client=client,
    )
    assert consumer.unread({"predictions"}) == {behind, unfetched}
    assert consumer.unread({"predictions", "model-events"}) == {behind, unfetched, other}
    # A steady stream moves every end on. A partition that has read its backlog (the end it had
    # when first seen) is live: behind the newest message, it holds nothing back.
    client.ends |= {read: 20, behind: 20, unfetched: 7}
    client.positions[unfetched] = 0
    assert consumer.unread({"predictions"}) == {behind, unfetched}  # 4 < 10; 0 < 7
    client.positions |= {behind: 10, unfetched: 3}
    assert consumer.unread({"predictions"}) == {unfetched}
    client.positions[unfetched] = 7
    assert consumer.unread({"predictions"}) == set()
    client.ends |= {read: 30, behind: 30, unfetched: 30}
    assert consumer.unread({"predictions"}) == set()
    # Assigned again after a rebalance, a partition has a backlog again: seen gone between two
    # calls, or told by the rebalance listener when it happened between them.
    client.ends.pop(behind)
    assert consumer.unread({"predictions"}) == set()
    client.ends[behind] = 40
    assert consumer.unread({"predictions"}) == {behind}
    client.positions[behind] = 40
    assert consumer.unread({"predictions"}) == set()
    client.ends[behind], client.positions[behind] = 50, 45
    consumer.forget_backlogs([behind])
    assert consumer.unread({"predictions"}) == {behind}
