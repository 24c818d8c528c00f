"""The ``bus`` benchmark: ``bottega.bus`` against bare kafka-python, in the same run.

Both sides move the same ``Transaction`` events through a private broker, with the same
producer settings (acks from all in-sync replicas, a 5 ms linger) and the same consumer settings
(manual commits, batches of at most :data:`MAX_BATCH`):

- **bus**: ``Producer.publish`` serializes and keys each event; ``Consumer.poll_once`` parses each
  message as a ``Transaction``, hands the batch to a counting handler and commits it.
- **bare**: ``KafkaProducer.send`` of bytes serialized beforehand; ``KafkaConsumer.poll`` and a
  commit per polled batch, without parsing.

Produce time is from the first send until ``flush`` returns. Consume time is from the first poll
until every message has been handled and its batch committed. Each repetition uses fresh topics
and a fresh group. Bare and bus repetitions alternate (bare, bus, bus, bare, ...), after a
warm-up pair that is discarded, so that machine noise and the broker's JIT warm-up hit both sides
alike. The record holds the medians, and the ratios of the medians, bus / bare.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata
from prometheus_client import CollectorRegistry

from bench.broker import private_broker
from bench.harness import (
    Benchmark,
    BenchmarkError,
    Measurement,
    median,
    non_negative_int,
    positive_int,
)
from bottega.bus import (
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    BusMetrics,
    Consumer,
    Envelope,
    Producer,
    create_topics,
)
from bottega.events import Transaction
from bottega.settings import KafkaSettings

log = logging.getLogger(__name__)

# The bus Consumer's default batch; the bare consumer polls batches of the same size.
MAX_BATCH = 500
# Client settings that both sides get, explicitly, so the comparison stays fair if the bus's
# defaults change.
# A consumer that gets nothing for this long has lost messages: fail, do not hang.
STALL_TIMEOUT_S = 60.0
POLL_TIMEOUT_MS = 1000

CATEGORIES = ("grocery", "fuel", "restaurants", "travel", "electronics", "pharmacy", "fashion")
COUNTRIES = ("FR", "DE", "IT", "ES", "NL", "BE", "PT", "GB", "US")


@dataclass(frozen=True)
class Sample:
    """One repetition of one side: messages per second, producing and consuming."""

    produce_per_s: float
    consume_per_s: float


def make_transactions(count: int, *, seed: int = 7) -> list[Transaction]:
    """``count`` plausible card payments, the same for a given seed."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return [
        Transaction(
            event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            event_time=start + timedelta(seconds=i),
            card_id=f"card-{rng.randrange(5000):05d}",
            merchant_id=f"merchant-{rng.randrange(500):04d}",
            amount=round(rng.lognormvariate(3.5, 1.0), 2) + 0.01,
            merchant_category=rng.choice(CATEGORIES),
            country=rng.choice(COUNTRIES),
            card_country="FR",
            channel=rng.choice(("card_present", "online")),
            device_id=f"device-{rng.randrange(10_000):05d}" if rng.random() < 0.7 else None,
        )
        for i in range(count)
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bus benchmark's options."""
    parser.add_argument(
        "--messages", type=positive_int, default=20_000, help="messages per repetition"
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=5, help="measured repetitions a side"
    )
    parser.add_argument(
        "--warmup", type=non_negative_int, default=1, help="discarded repetitions a side, first"
    )


def run(options: argparse.Namespace) -> Measurement:
    """Start a private broker, alternate bare and bus repetitions, and return the medians."""
    count: int = options.messages
    events = make_transactions(count)
    payloads = [(event.key(), event.to_bytes()) for event in events]
    rounds = options.warmup + options.repeats
    bare: list[Sample] = []
    bus: list[Sample] = []
    with private_broker() as kafka:
        create_topics(kafka, [_topic(side, i) for i in range(rounds) for side in ("bare", "bus")])
        metrics = BusMetrics.for_registry(CollectorRegistry())
        for i in range(rounds):
            # Bare, bus, then bus, bare: the order alternates, so a drift over the run (the
            # broker's JIT warming up, a noisy neighbour) does not favour either side.
            if i % 2 == 0:
                bare_sample = _bare_repetition(kafka, _topic("bare", i), payloads)
                bus_sample = _bus_repetition(kafka, _topic("bus", i), events, metrics)
            else:
                bus_sample = _bus_repetition(kafka, _topic("bus", i), events, metrics)
                bare_sample = _bare_repetition(kafka, _topic("bare", i), payloads)
            warmup = i < options.warmup
            if not warmup:
                bare.append(bare_sample)
                bus.append(bus_sample)
            log.info(
                "warm-up repetition" if warmup else "repetition",
                extra={
                    "round": f"{i + 1}/{rounds}",
                    "bare_produce_per_s": round(bare_sample.produce_per_s),
                    "bus_produce_per_s": round(bus_sample.produce_per_s),
                    "bare_consume_per_s": round(bare_sample.consume_per_s),
                    "bus_consume_per_s": round(bus_sample.consume_per_s),
                },
            )
    return _summarize(bus, bare)


def _summarize(bus: Sequence[Sample], bare: Sequence[Sample]) -> Measurement:
    produce = median([s.produce_per_s for s in bus])
    consume = median([s.consume_per_s for s in bus])
    bare_produce = median([s.produce_per_s for s in bare])
    bare_consume = median([s.consume_per_s for s in bare])
    return Measurement(
        metrics={
            "produce_per_s": round(produce, 1),
            "consume_per_s": round(consume, 1),
            "bare_produce_per_s": round(bare_produce, 1),
            "bare_consume_per_s": round(bare_consume, 1),
        },
        ratios={
            "produce_vs_bare": round(produce / bare_produce, 3),
            "consume_vs_bare": round(consume / bare_consume, 3),
        },
    )


def _bare_repetition(
    kafka: KafkaSettings, topic: str, payloads: Sequence[tuple[bytes, bytes]]
) -> Sample:
    producer = KafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id="bench-bare",
        request_timeout_ms=kafka.request_timeout_ms,
        **PRODUCER_DEFAULTS,
    )
    try:
        started = time.perf_counter()
        for key, value in payloads:
            producer.send(topic, value=value, key=key)
        producer.flush()
        produce_s = time.perf_counter() - started
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"{topic}-group",
        client_id="bench-bare",
        request_timeout_ms=max(kafka.request_timeout_ms, 30_000),
        **CONSUMER_DEFAULTS,
    )
    try:
        consume_s = _timed(lambda: _drain_bare(consumer, len(payloads)))
    finally:
        consumer.close(autocommit=False)
    return Sample(len(payloads) / produce_s, len(payloads) / consume_s)


def _drain_bare(consumer: Any, expected: int) -> None:
    """Poll, count and commit batch by batch until ``expected`` messages are in."""
    handled = 0
    progress_at = time.monotonic()
    while handled < expected:
        records = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_BATCH)
        if not records:
            _check_stall(progress_at, handled, expected)
            continue
        offsets = {}
        for tp, messages in records.items():
            handled += len(messages)
            offsets[tp] = OffsetAndMetadata(messages[-1].offset + 1, "", -1)
        consumer.commit(offsets)
        progress_at = time.monotonic()


def _bus_repetition(
    kafka: KafkaSettings, topic: str, events: Sequence[Transaction], metrics: BusMetrics
) -> Sample:
    with Producer(kafka, client_id="bench-bus", metrics=metrics, **PRODUCER_DEFAULTS) as producer:
        started = time.perf_counter()
        for event in events:
            producer.publish(event, topic=topic)
        producer.flush()
        produce_s = time.perf_counter() - started

        tally = _Tally()
        with Consumer(
            kafka,
            group_id=f"{topic}-group",
            topics={topic: Transaction},
            handler=tally,
            dead_letters=producer,
            max_batch=MAX_BATCH,
            metrics=metrics,
            client_id="bench-bus",
            **CONSUMER_DEFAULTS,
        ) as consumer:
            consume_s = _timed(lambda: _drain_bus(consumer, tally, len(events)))
    return Sample(len(events) / produce_s, len(events) / consume_s)


class _Tally:
    """A batch handler that counts what it is handed."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, batch: Sequence[Envelope[Any]]) -> None:
        self.count += len(batch)


def _drain_bus(consumer: Consumer, tally: _Tally, expected: int) -> None:
    """Call ``poll_once`` until the handler has counted ``expected`` committed messages."""
    progress_at = time.monotonic()
    while tally.count < expected:
        result = consumer.poll_once(timeout_ms=POLL_TIMEOUT_MS)
        if result.failed or result.dead_lettered:
            raise BenchmarkError(
                f"the bus consumer failed a batch or dead-lettered {result.dead_lettered} "
                "messages of a clean topic"
            )
        if not result.consumed:
            _check_stall(progress_at, tally.count, expected)
            continue
        progress_at = time.monotonic()


def _check_stall(progress_at: float, handled: int, expected: int) -> None:
    if time.monotonic() - progress_at > STALL_TIMEOUT_S:
        raise BenchmarkError(
            f"consumed {handled} of {expected} messages, then nothing for {STALL_TIMEOUT_S:.0f}s"
        )


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _topic(side: str, repetition: int) -> str:
    return f"bench-{side}-{repetition}"


BENCHMARK = Benchmark(
    name="bus",
    summary="produce/consume throughput of bottega.bus against bare kafka-python",
    add_arguments=add_arguments,
    run=run,
)
