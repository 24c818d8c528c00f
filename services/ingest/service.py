"""The ingest service: two consumer groups, one for transactions and one for labels.

Transactions: each micro-batch goes through :func:`aggregate_batch` (the aggregation the
backfill also runs), is appended offline, pushed online, and only then are its offsets
committed. Labels: appended to the offline label table. On start, and after a failed batch, the
card state is rebuilt from the offline store, which is the source of truth (see
:meth:`FraudFeatureStore.recover`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from bottega.bus import BusMetrics, Consumer, Envelope, Producer
from bottega.events import Label, Transaction
from bottega.metrics_server import MetricsServer
from bottega.usecases.fraud.store import FraudFeatureStore, aggregate_batch
from bottega.usecases.fraud.tables import Source
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings

log = logging.getLogger(__name__)


class TransactionSink:
    """The transactions handler: aggregate, write offline, push online."""

    def __init__(self, fs: FraudFeatureStore, metrics: IngestMetrics) -> None:
        self.fs = fs
        self.metrics = metrics
        self.recovery = fs.recover()
        self.aggregator = self.recovery.aggregator

    def __call__(self, batch: Sequence[Envelope[Any]]) -> None:
        items = [(env.event, Source(env.partition, env.offset)) for env in batch]
        try:
            started = time.perf_counter()
            result = aggregate_batch(self.aggregator, items)
            aggregated = time.perf_counter()
            self.fs.write_batch(result)
            written = time.perf_counter()
            self.fs.push_online(result.rows)
            pushed = time.perf_counter()
        except Exception:
            # The state already holds this batch, but the store may not: rebuild the state from
            # the store, so that the retried batch is applied again rather than taken as
            # duplicates of itself.
            log.exception("transaction batch failed; rebuilding state from the offline store")
            self.aggregator = self.fs.recover().aggregator
            raise
        for outcome, count in result.outcomes.items():
            self.metrics.events.labels(outcome.value).inc(count)
        self.metrics.batch_size.observe(len(items))
        self.metrics.batch_seconds.labels("aggregate").observe(aggregated - started)
        self.metrics.batch_seconds.labels("offline").observe(written - aggregated)
        self.metrics.batch_seconds.labels("online").observe(pushed - written)
        if result.rows:
            self.metrics.last_event_time.set(max(r.as_of for r in result.rows).timestamp())


class LabelSink:
    """The labels handler: append each label once to the offline label table."""

    def __init__(self, fs: FraudFeatureStore, metrics: IngestMetrics, seen: set[str]) -> None:
        self.fs = fs
        self.metrics = metrics
        self.seen = seen

    def __call__(self, batch: Sequence[Envelope[Any]]) -> None:
        fresh: dict[str, tuple[Label, Source]] = {}
        for env in batch:
            key = str(env.event.event_id)
            if key not in self.seen and key not in fresh:
                fresh[key] = (env.event, Source(env.partition, env.offset))
        self.fs.write_labels(list(fresh.values()))
        self.seen.update(fresh)
        self.metrics.labels.labels("written").inc(len(fresh))
        self.metrics.labels.labels("duplicate").inc(len(batch) - len(fresh))


class IngestService:
    """Runs both consumers and the metrics server until stopped."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        fs: FraudFeatureStore | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = IngestMetrics(self.registry)
        self.bus_metrics = BusMetrics(self.registry)
        self.fs = fs or FraudFeatureStore(settings)
        self.stop_event = threading.Event()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._consumers: list[Consumer] = []
        self._server: MetricsServer | None = None
        self._dead_letters: Producer | None = None

    @property
    def ready(self) -> bool:
        """True once recovery is done and both consumers run."""
        return self._ready.is_set()

    def start(self) -> IngestService:
        """Serve metrics at once; recover, then consume in background threads."""
        self._server = MetricsServer(
            self.settings.bind_host, self.settings.ingest.port, self.registry, lambda: self.ready
        ).start()
        self.fs.apply()
        stream = self.settings.stream
        kafka = self.settings.kafka
        self._dead_letters = Producer(
            kafka, client_id="bottega-ingest-dlq", metrics=self.bus_metrics
        )
        transactions = TransactionSink(self.fs, self.metrics)
        # The labels already stored come with the same recovery, not a second scan.
        labels = LabelSink(self.fs, self.metrics, transactions.recovery.label_ids)

        def member(
            group: str, event: type[Transaction] | type[Label], handler: Any, client_id: str
        ) -> Consumer:
            assert self._dead_letters is not None
            return Consumer(
                kafka,
                group_id=group,
                topics={event.topic: event},
                handler=handler,
                dead_letters=self._dead_letters,
                max_batch=stream.max_batch,
                linger_ms=stream.linger_ms,
                metrics=self.bus_metrics,
                client_id=client_id,
            )

        self._consumers = [
            member(stream.transactions_group, Transaction, transactions, "bottega-ingest"),
            member(stream.labels_group, Label, labels, "bottega-ingest-labels"),
        ]
        every = (stream.lag_interval_s, self._record_lag)
        for consumer in self._consumers:
            thread = threading.Thread(
                target=consumer.run,
                args=(self.stop_event,),
                kwargs={"every": every},
                name=consumer.group_id,
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._ready.set()
        self.metrics.ready.set(1)
        log.info("ingest ready", extra={"port": self.settings.ingest.port})
        return self

    def _record_lag(self, consumer: Consumer) -> None:
        # Runs on the consumer's own thread (kafka-python's consumer is not thread-safe).
        totals: dict[str, int] = {}
        for tp, behind in consumer.lag().items():
            totals[tp.topic] = totals.get(tp.topic, 0) + behind
        for topic, behind in totals.items():
            self.metrics.lag.labels(topic).set(behind)

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and stop."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=30)
        for consumer in self._consumers:
            consumer.close()
        if self._dead_letters:
            self._dead_letters.close(timeout=10)
        if self._server:
            self._server.stop()
        self._ready.clear()
        self.metrics.ready.set(0)
