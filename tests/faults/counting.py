"""Counting events end to end: a replay that notes what the broker acknowledged, and readers of
the topics, the consumer groups and the feature store.

Free of pytest, so that the Docker-mode tests can run it inside the stack's ``cli`` container
(``tests/docker/inside.py``) as the local fault tests run it beside their stack.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from bottega.bus import Producer
from bottega.events import Event
from bottega.replay.player import Player, ReplayOptions, ReplayStats
from bottega.replay.session import plan
from bottega.settings import BottegaSettings, KafkaSettings
from tests.waiting import wait_for


class RecordingPublisher:
    """The bus producer, noting the event_id of every event the broker acknowledged."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._lock = threading.Lock()
        self.acked: dict[str, set[str]] = {}
        self.failed: Counter[str] = Counter()

    def publish(self, event: Event, *, topic: str | None = None) -> Any:
        """Send ``event``; note it once the broker acknowledges it (or refuses it)."""
        name = topic or event.topic
        event_id = str(event.event_id)
        future = self._producer.publish(event, topic=topic)
        future.add_callback(lambda _: self._acked(name, event_id))
        future.add_errback(lambda _: self._failed(name))
        return future

    def _acked(self, topic: str, event_id: str) -> None:
        with self._lock:
            self.acked.setdefault(topic, set()).add(event_id)

    def _failed(self, topic: str) -> None:
        with self._lock:
            self.failed[topic] += 1

    def flush(self, timeout: float | None = None) -> None:
        """Wait for the broker's answers."""
        self._producer.flush(timeout=timeout)


class Replay:
    """The real replay player on a thread of its own, against the fault stack."""

    def __init__(
        self,
        settings: BottegaSettings,
        scenario: Path,
        start: datetime,
        duration: timedelta,
        options: ReplayOptions,
    ) -> None:
        planned = plan(settings, scenario, start=start, duration=duration)
        self.stats = ReplayStats(planned.scenario.name, planned.start, planned.end)
        self._producer = Producer(settings.kafka, client_id="faults-replay")
        self.publisher = RecordingPublisher(self._producer)
        self._client = httpx.Client(
            base_url=settings.serving.url,
            limits=httpx.Limits(max_connections=options.concurrency),
        )
        self._player = Player(
            planned.simulator.events(),
            self.stats,
            options,
            publisher=self.publisher,
            client=self._client,
            lead_in_until=planned.start if planned.lead_in else None,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults-replay", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._player.run(self._stop)
        except BaseException as exc:  # handed to the test by finish()
            self._error = exc

    def start(self) -> Replay:
        """Start playing."""
        self._thread.start()
        return self

    def playing(self, wait_s: float = 0.0) -> bool:
        """True while the replay still plays, after waiting up to ``wait_s`` for its end."""
        self._thread.join(timeout=wait_s)
        return self._thread.is_alive()

    def wait_transactions(self, count: int, *, timeout_s: float = 120) -> None:
        """Wait until ``count`` transactions were played."""
        wait_for(
            lambda: self.stats.transactions >= count or not self._thread.is_alive(),
            timeout_s=timeout_s,
            what=f"{count} transactions played",
        )
        assert self.stats.transactions >= count, "the replay ended early"

    def finish(self, *, timeout_s: float = 300) -> ReplayStats:
        """Wait for the end of the scenario span and every acknowledgement; close."""
        self._thread.join(timeout=timeout_s)
        self.close()
        if self._error is not None:
            raise self._error
        assert not self._thread.is_alive(), "the replay did not finish"
        return self.stats

    def close(self) -> None:
        """Stop (when still playing) and close the client and the producer."""
        self._stop.set()
        self._thread.join(timeout=60)
        self._client.close()
        self._producer.close(timeout=60)

    def acked(self, topic: str) -> set[str]:
        """The event_ids of ``topic`` that the broker acknowledged."""
        return set(self.publisher.acked.get(topic, set()))


def read_topic(
    kafka: KafkaSettings, topic: str, *, keep: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """Every message now in ``topic``, from the start of each partition, parsed as JSON."""
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        client_id="faults-reader",
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"reading {topic} took over 120s"
            for records in consumer.poll(timeout_ms=1000, max_records=5000).values():
                for record in records:
                    value = json.loads(record.value)
                    if keep is None or keep(value):
                        out.append(value)
        return out
    finally:
        consumer.close()


def stored_counts(table: Any, ids: set[str]) -> Counter[str]:
    """How many rows of the offline ``table`` hold each of ``ids`` (absent ids: 0)."""
    rows = table.query("SELECT event_id, count(*) AS n FROM t GROUP BY event_id").to_pylist()
    return Counter({r["event_id"]: r["n"] for r in rows if r["event_id"] in ids})


def metric_sum(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` on a service's ``/metrics`` that match ``labels``."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# The consumer groups of the stack and the topics each reads.
GROUPS = {
    "bottega-ingest": ("transactions",),
    "bottega-ingest-labels": ("labels",),
    "bottega-monitor": ("predictions", "labels", "model-events"),
}


def _committed(admin: KafkaAdminClient, group: str) -> dict[TopicPartition, Any]:
    """The group's committed offsets. Asked again while the broker answers with a retriable
    error: a broker just restarted answers CoordinatorLoadInProgress until it has loaded the
    group's offsets, which says nothing about the group's lag."""
    answer: dict[str, dict[TopicPartition, Any]] = {}

    def fetched() -> bool:
        try:
            answer.update(admin.list_group_offsets({group: None}))
        except KafkaError as exc:
            if not exc.retriable:
                raise
            return False
        return True

    wait_for(fetched, timeout_s=60, what=f"the committed offsets of {group}", every_s=0.5)
    return answer[group]


def group_lag(kafka: KafkaSettings) -> dict[str, int]:
    """Messages each of the stack's consumer groups has not committed yet, by group."""
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="faults-lag")
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, client_id="faults-lag")
    try:
        lag: dict[str, int] = {}
        for group, topics in GROUPS.items():
            committed = _committed(admin, group)
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in consumer.partitions_for_topic(topic) or ()
            ]
            ends = consumer.end_offsets(partitions)
            lag[group] = sum(
                ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions
            )
        return lag
    finally:
        admin.close()
        consumer.close()
