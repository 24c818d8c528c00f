"""The consumer-group helper: commit after the handler, seek back on failure, dead-letter
what does not parse."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError

from bottega.bus.metrics import BusMetrics
from bottega.bus.producer import Producer, connection_options
from bottega.errors import SchemaError
from bottega.events import Event, dlq_topic
from bottega.settings import KafkaSettings

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

# A dead letter carries the message's value whole up to this size, and its start beyond it: with
# the headers added, a copy of a message near the broker's 1 MiB limit would no longer fit, the
# dead-lettering would fail, and the partition would be stuck behind it for good.
DLQ_VALUE_LIMIT = 512 * 1024

CONSUMER_DEFAULTS: Mapping[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
}


@dataclass(frozen=True)
class Envelope(Generic[E]):
    """A parsed event and where it came from."""

    event: E
    topic: str
    partition: int
    offset: int


BatchHandler = Callable[[Sequence[Envelope[Any]]], None]


@dataclass
class PollResult:
    """What one call to :meth:`Consumer.poll_once` did."""

    consumed: int = 0
    dead_lettered: int = 0
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    failed: bool = False


class Consumer:
    """A member of a consumer group that commits only after its handler succeeds.

    ``topics`` maps each topic to the event class its messages must parse as. The handler gets a
    batch of parsed envelopes. When it returns, the batch's offsets are committed and any
    unparseable messages of the batch have been acknowledged by ``<topic>.dlq``. When it raises,
    nothing is committed, the consumer seeks back to the start of the batch, and the next poll,
    after a growing backoff, hands it the same messages again. A message over
    ``kafka.max_event_bytes`` is dead-lettered without being parsed. ``client`` replaces the
    kafka-python consumer, for unit tests.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        group_id: str,
        topics: Mapping[str, type[Event]],
        handler: BatchHandler,
        dead_letters: Producer,
        max_batch: int = 500,
        linger_ms: int = 0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 30.0,
        metrics: BusMetrics | None = None,
        client_id: str = "bottega",
        client: Any = None,
        **config: Any,
    ) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self.group_id = group_id
        self._schemas = dict(topics)
        self._handler = handler
        self._dead_letters = dead_letters
        self._max_batch = max_batch
        self._linger_ms = linger_ms
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._backoff_s = 0.0
        self._max_event_bytes = kafka.max_event_bytes
        self._metrics = metrics or BusMetrics.for_registry()
        # The offsets this member has dead-lettered and not yet committed past: a batch consumed
        # again (its handler failed, a dead letter timed out, a commit lost to a rebalance) does
        # not send its poison to the DLQ twice. Pruned at each commit.
        self._sent_to_dlq: dict[TopicPartition, set[int]] = {}
        if client is None:
            options: dict[str, Any] = {
                **connection_options(kafka, client_id),
                "group_id": group_id,
                "request_timeout_ms": max(kafka.request_timeout_ms, 30_000),
                **CONSUMER_DEFAULTS,
            }
            options.update(config)
            client = KafkaConsumer(**options)
            client.subscribe(list(self._schemas), listener=_Reassigned(self))
        self._consumer = client
        # unread(): each newly assigned partition's end when first learned, and those read to it.
        self._backlog_ends: dict[TopicPartition, int] = {}
        self._caught_up: set[TopicPartition] = set()

    def forget_backlogs(self, partitions: Collection[TopicPartition]) -> None:
        """A rebalance moved ``partitions``: when this member holds one again, it reads from
        the group's committed offset, a backlog again (see :meth:`unread`)."""
        for tp in partitions:
            self._backlog_ends.pop(tp, None)
            self._caught_up.discard(tp)

    @property
    def backoff_s(self) -> float:
        """How long the caller should wait before the next poll (0 after a success)."""
        return self._backoff_s

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member holds now."""
        return set(self._consumer.assignment())

    def lag(self) -> dict[TopicPartition, int]:
        """Messages behind the end of each assigned partition (a metadata request)."""
        assigned = list(self._consumer.assignment())
        if not assigned:
            return {}
        ends = self._consumer.end_offsets(assigned)
        return {tp: max(0, ends[tp] - self._consumer.position(tp)) for tp in assigned}

    def unread(self, topics: Collection[str]) -> set[TopicPartition]:
        """The partitions of ``topics`` this member holds whose backlog it has not read yet.

        A partition's backlog is what it held when this member first learned its end, after
        being assigned it: a restarted consumer reads one partition's backlog before another's.
        Once read to that end, the partition is live and never unread again while assigned (a
        rebalance that moves it makes it a backlog again, :meth:`forget_backlogs`),
        however far behind the newest message a steady stream keeps it: measured against the
        moving end, some partition was nearly always behind under load, and a monitor that
        waited for all of them at once closed its windows in bursts, minutes late.

        As far as the last fetch knows, so it never waits on the network: a partition whose end
        the consumer has not learned yet (no fetch answered since it was assigned) is unread.
        """
        assigned = self._consumer.assignment()
        for tp in set(self._backlog_ends) - set(assigned):
            del self._backlog_ends[tp]  # reassigned elsewhere: a backlog again if it comes back
        for tp in set(self._caught_up) - set(assigned):
            self._caught_up.discard(tp)
        unread: set[TopicPartition] = set()
        for tp in assigned:
            if tp.topic not in topics or tp in self._caught_up:
                continue
            end = self._backlog_ends.get(tp)
            if end is None:
                end = self._consumer.highwater(tp)
                if end is None:
                    unread.add(tp)
                    continue
                self._backlog_ends[tp] = end
            # A fetch answered for this partition, so its position is known; with no time to
            # wait, position() returns it at once (None if a reset is pending: unread).
            position = self._consumer.position(tp, timeout_ms=0)
            if position is None or position < end:
                unread.add(tp)
            else:
                self._caught_up.add(tp)
                del self._backlog_ends[tp]
        return unread

    def poll_once(self, timeout_ms: int = 1000) -> PollResult:
        """Read one batch, hand it to the handler, and commit it if the handler succeeds."""
        records = self._poll_batch(timeout_ms)
        result = PollResult()
        if not records:
            return result
        started = time.perf_counter()
        good: list[Envelope[Any]] = []
        poisoned: list[tuple[Any, str]] = []
        first: dict[TopicPartition, int] = {}
        last: dict[TopicPartition, int] = {}
        for tp, messages in records.items():
            first[tp] = messages[0].offset
            last[tp] = messages[-1].offset
            schema = self._schemas[tp.topic]
            for message in messages:
                try:
                    if message.value is None:
                        raise SchemaError(f"{schema.__name__}: the message has no value")
                    if len(message.value) > self._max_event_bytes:
                        raise SchemaError(
                            f"{schema.__name__}: the message is {len(message.value)} bytes, "
                            f"over the limit of {self._max_event_bytes}"
                        )
                    event = schema.from_bytes(message.value)
                except SchemaError as exc:
                    poisoned.append((message, str(exc)))
                    continue
                good.append(Envelope(event, tp.topic, tp.partition, message.offset))

        try:
            if good:
                self._handler(good)
            self._dead_letter(poisoned)
        except Exception:
            self._metrics.handler_failures.labels(self.group_id).inc()
            self._backoff_s = min(
                max(self._backoff_s * 2, self._backoff_initial_s), self._backoff_max_s
            )
            log.exception(
                "handler failed; the batch will be consumed again",
                extra={"group": self.group_id, "batch": len(good), "backoff_s": self._backoff_s},
            )
            for tp, offset in first.items():
                self._consumer.seek(tp, offset)
            result.failed = True
            return result

        self._backoff_s = 0.0
        offsets = {tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in last.items()}
        try:
            self._consumer.commit(offsets)
        except CommitFailedError:
            # The group rebalanced under us: the new owner of these partitions gets the batch
            # again, which at-least-once delivery allows.
            log.warning("commit failed after a rebalance", extra={"group": self.group_id})
            return result
        for topic, count in collections.Counter(env.topic for env in good).items():
            self._metrics.messages.labels(topic, "consumed").inc(count)
        result.consumed = len(good)
        result.dead_lettered = len(poisoned)
        result.committed = {tp: om.offset for tp, om in offsets.items()}
        for tp, committed in result.committed.items():
            sent = self._sent_to_dlq.get(tp)
            if sent:
                sent.difference_update({o for o in sent if o < committed})
        self._metrics.batch_seconds.labels(self.group_id).observe(time.perf_counter() - started)
        return result

    def _poll_batch(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        """One poll, then more for up to ``linger_ms`` while the batch is under ``max_batch``.

        Lingering trades a little latency for fewer, larger batches: a sink that writes a file
        per batch writes far fewer small files.
        """
        records: dict[TopicPartition, list[Any]] = {}
        count = 0
        deadline = time.monotonic() + self._linger_ms / 1000
        wait_ms = timeout_ms
        while True:
            got = self._consumer.poll(timeout_ms=wait_ms, max_records=self._max_batch - count)
            for tp, messages in got.items():
                records.setdefault(tp, []).extend(messages)
                count += len(messages)
            left_ms = int((deadline - time.monotonic()) * 1000)
            if count == 0 or count >= self._max_batch or left_ms <= 0:
                return records
            wait_ms = left_ms

    def _dead_letter(self, poisoned: list[tuple[Any, str]]) -> None:
        """Send each unparseable message to its DLQ and wait until the broker has them all.

        A message this member already dead-lettered (its batch is being consumed again) is not
        sent twice. Each copy carries its source topic, partition and offset in its headers:
        another member that takes the partition over after a rebalance may send a message again,
        and those headers are what a reader of the DLQ deduplicates on.
        """
        futures = []
        for message, reason in poisoned:
            tp = TopicPartition(message.topic, message.partition)
            if message.offset in self._sent_to_dlq.get(tp, ()):
                continue
            log.warning(
                "dead-lettering a message",
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "reason": reason,
                },
            )
            value = message.value if message.value is not None else b""
            headers = [
                ("bottega.error", reason.encode()[:4096]),
                ("bottega.source.topic", message.topic.encode()),
                ("bottega.source.partition", str(message.partition).encode()),
                ("bottega.source.offset", str(message.offset).encode()),
                ("bottega.consumer.group", self.group_id.encode()),
            ]
            if len(value) > DLQ_VALUE_LIMIT:
                headers.append(("bottega.truncated_from", str(len(value)).encode()))
                value = value[:DLQ_VALUE_LIMIT]
            future = self._dead_letters.send(
                dlq_topic(message.topic), value, key=message.key, headers=headers
            )
            futures.append((message, future))
        sent: collections.Counter[str] = collections.Counter()
        failure: Exception | None = None
        for message, future in futures:
            try:
                future.get(timeout=30)
            except Exception as exc:  # the first is raised below, once every copy is accounted
                failure = failure or exc
                continue
            tp = TopicPartition(message.topic, message.partition)
            self._sent_to_dlq.setdefault(tp, set()).add(message.offset)
            sent[message.topic] += 1
        for topic, count in sent.items():
            self._metrics.messages.labels(topic, "dead_lettered").inc(count)
        if failure is not None:
            raise failure

    def run(
        self,
        stop: threading.Event,
        *,
        timeout_ms: int = 1000,
        every: tuple[float, Callable[[Consumer], None]] | None = None,
    ) -> None:
        """Poll until ``stop`` is set, backing off after a failed batch.

        ``every=(seconds, fn)`` calls ``fn(self)`` that often between polls, on this thread:
        kafka-python's consumer is not thread-safe, so a lag probe must run here, not beside it.
        """
        next_tick = time.monotonic()
        while not stop.is_set():
            try:
                self.poll_once(timeout_ms)
            except KafkaError:
                self._backoff_s = min(
                    max(self._backoff_s * 2, self._backoff_initial_s), self._backoff_max_s
                )
                log.exception("poll failed", extra={"group": self.group_id})
            if every is not None and time.monotonic() >= next_tick:
                interval, fn = every
                next_tick = time.monotonic() + interval
                try:
                    fn(self)
                except Exception:  # a probe must never stop the consumer
                    log.warning("periodic task failed", exc_info=True)
            if self._backoff_s:
                stop.wait(self._backoff_s)

    def close(self) -> None:
        """Leave the group and close the connection; offsets were committed batch by batch."""
        self._consumer.close(autocommit=False)

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Reassigned(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the consumer which partitions a rebalance took or gave, for :meth:`Consumer.unread`."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self._consumer.forget_backlogs(revoked)

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._consumer.forget_backlogs(assigned)
