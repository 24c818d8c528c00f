"""What the fault tests share: the stack, a replay that records what the broker acknowledged,
killing and restarting a service, and counting event_ids in topics and in the feature store."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from bottega.auth import ensure_trainer_token
from bottega.bus import Producer
from bottega.events import Event
from bottega.registry import CHAMPION, MODEL_NAMES, MlflowRegistry
from bottega.replay.player import Player, ReplayOptions, ReplayStats
from bottega.replay.session import plan
from bottega.settings import KafkaSettings
from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings
from bottega.usecases.fraud.store import FraudFeatureStore
from tests.integration.conftest import wait_for

__all__ = ["FaultStack", "Figures", "Replay", "Trainer", "read_topic", "wait_for", "wait_until"]


class Figures:
    """The figures the tests measured, by test, kept in a JSON file as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = {}

    def record(self, name: str, **values: Any) -> None:
        """Add (or replace) the figures of ``name`` and rewrite the file."""
        self.data[name] = values
        self.path.write_text(json.dumps(self.data, indent=2, default=str))


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
        settings: StackSettings,
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


@dataclass
class FaultStack:
    """The private stack, and the simulated clock the tests' replays share."""

    settings: StackSettings
    runner: LocalStack
    env: dict[str, str]
    project_root: Path
    figures: Figures = field(init=False)
    _store: FraudFeatureStore | None = field(default=None, init=False)
    _played_until: datetime | None = field(default=None, init=False)
    _killed: dict[str, list[psutil.Process]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.figures = Figures(self.settings.home / "fault-figures.json")

    @property
    def store(self) -> FraudFeatureStore:
        """The stack's feature store, read from this process."""
        if self._store is None:
            self._store = FraudFeatureStore(self.settings)
        return self._store

    @contextmanager
    def replay(
        self,
        duration: timedelta,
        *,
        speed: float = 60.0,
        concurrency: int = 4,
        scenario: str = "baseline",
    ) -> Iterator[Replay]:
        """A replay of ``duration`` (simulated), after everything played so far."""
        newest = self.store.newest_transaction_time()
        assert newest is not None, "the store holds no history"
        begin = max(newest, self._played_until or newest) + timedelta(minutes=1)
        replay = Replay(
            self.settings,
            self.project_root / "scenarios" / f"{scenario}.yaml",
            begin,
            duration,
            ReplayOptions(speed=speed, concurrency=concurrency, timeout_s=5.0),
        )
        self._played_until = replay.stats.sim_end
        try:
            yield replay.start()
        finally:
            replay.close()

    def kill(self, name: str, *, whole: bool = False) -> float:
        """SIGKILL the service's process, the one its pid file names, as the kernel's
        out-of-memory killer would; with ``whole``, every process it started as well, as a
        container's kill would. The time it was killed (``time.time()``)."""
        record = self.runner.pid_file(name).read()
        proc = record.process() if record else None
        assert proc is not None, f"{name} is not running"
        family = [proc, *proc.children(recursive=True)]
        self._killed[name] = family
        killed_at = time.time()
        for member in family if whole else [proc]:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        psutil.wait_procs(family if whole else [proc], timeout=30)
        assert self.runner.pid_file(name).live() is None, f"{name} survived SIGKILL"
        return killed_at

    def wait_gone(self, name: str, *, timeout_s: float = 15) -> float:
        """Wait until every process of the killed service has exited by itself; the seconds
        that took. Fails if one is still running at ``timeout_s``."""
        started = time.monotonic()
        procs = self._killed.get(name, [])
        wait_for(
            lambda: not any(running(p) for p in procs),
            timeout_s=timeout_s,
            what=f"every process of the killed {name} to exit",
            every_s=0.1,
        )
        return time.monotonic() - started

    def restart(self, name: str) -> float:
        """``bottega up`` for one killed service: start it again and wait until it is healthy;
        the seconds that took. Nothing of the killed process may be left running after."""
        started = time.monotonic()
        report = self.runner.up([name])
        assert report.started == [name], report
        left = [p.pid for p in self._killed.pop(name, []) if running(p)]
        assert left == [], f"{name} left processes behind: {left}"
        return time.monotonic() - started


def running(proc: psutil.Process) -> bool:
    """True while ``proc`` runs: a zombie (exited, its status not yet collected by a parent
    that is not ours to make collect it) has stopped."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(
    condition: Callable[[], object], *, timeout_s: float, what: str, every_s: float = 2.0
) -> object:
    """``wait_for`` for conditions that cost a round of requests: asked every ``every_s``."""
    return wait_for(condition, timeout_s=timeout_s, what=what, every_s=every_s)


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


def group_lag(kafka: KafkaSettings) -> dict[str, int]:
    """Messages each of the stack's consumer groups has not committed yet, by group."""
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, client_id="faults-lag")
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, client_id="faults-lag")
    try:
        lag: dict[str, int] = {}
        for group, topics in GROUPS.items():
            committed = admin.list_group_offsets({group: None})[group]
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


class Trainer:
    """The trainer's HTTP API, with the stack's token."""

    def __init__(self, settings: StackSettings) -> None:
        self.url = settings.trainer.url
        token = ensure_trainer_token(settings).read_text().strip()
        self.headers = {"Authorization": f"Bearer {token}"}

    def retrain(self, reason: str) -> str:
        """Ask for a manual run; its id."""
        answer = httpx.post(
            f"{self.url}/retrain", json={"reason": reason}, headers=self.headers, timeout=10
        )
        assert answer.status_code == 202, answer.text
        run: str = answer.json()["run"]
        return run

    def alert(self, name: str) -> str:
        """Deliver a firing retrain alert as Alertmanager does; the run's id."""
        notification = {
            "version": "4",
            "status": "firing",
            "groupKey": f"faults:{name}",
            "alerts": [{"status": "firing", "labels": {"alertname": name, "retrain": "true"}}],
        }
        answer = httpx.post(
            f"{self.url}/webhook", json=notification, headers=self.headers, timeout=10
        )
        assert answer.status_code == 202, answer.text
        run: str = answer.json()["run"]
        return run

    def run(self, run_id: str) -> dict[str, Any]:
        """The run's record."""
        body: dict[str, Any] = httpx.get(f"{self.url}/runs/{run_id}", timeout=10).json()
        return body


def champion_and_versions(settings: StackSettings) -> tuple[str | None, set[str]]:
    """The champion's version and every registered version of the fraud model."""
    registry = MlflowRegistry(settings.mlflow_tracking_uri)
    champion = registry.by_alias(MODEL_NAMES["fraud"], CHAMPION)
    versions = {v.version for v in registry.versions(MODEL_NAMES["fraud"])}
    return (champion.version if champion else None), versions
