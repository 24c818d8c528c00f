"""The prediction log: every prediction published to ``predictions``, off the request path.

A request only puts its events on a bounded in-memory queue (``put_nowait``). One thread takes
them off and hands them to the bus :class:`~bottega.bus.Producer`, whose own buffer batches them
to the broker. Nothing here ever blocks scoring:

- a full queue drops the event and counts ``bottega_prediction_log_total{outcome="dropped"}``;
- a send the broker refuses, or that times out while the broker is down, counts
  ``outcome="failed"`` (and the bus's ``produce_failed``);
- events still queued when the process is killed are lost; a clean stop flushes for a bounded
  time.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from bottega.bus import BusMetrics, Producer
from bottega.events import Prediction
from bottega.settings import KafkaSettings
from services.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

_STOP = object()


class PredictionLog:
    """A bounded queue and one publishing thread."""

    def __init__(
        self,
        producer_factory: Callable[[], Producer],
        metrics: ServingMetrics,
        *,
        capacity: int,
        retry_s: float = 2.0,
    ) -> None:
        self._factory = producer_factory
        self._metrics = metrics
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._retry_s = retry_s
        self._producer: Producer | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._queued = metrics.prediction_log.labels("queued")
        self._dropped = metrics.prediction_log.labels("dropped")
        self._published = metrics.prediction_log.labels("published")
        self._failed = metrics.prediction_log.labels("failed")

    @classmethod
    def for_kafka(
        cls, kafka: KafkaSettings, metrics: ServingMetrics, *, capacity: int
    ) -> PredictionLog:
        """A log that publishes with the bus producer to ``kafka``."""

        def factory() -> Producer:
            return Producer(
                kafka,
                client_id="bottega-serving",
                metrics=BusMetrics.for_registry(),
                # Bounded waits: a broker outage turns into counted failures, not a stuck thread.
                # Two minutes to deliver rides out a broker restart (the fault tests measured
                # the broker back and the clients reconnected in 30 to 60 s): with 30 s, a third
                # of the predictions made meanwhile expired unsent, and the monitor never saw
                # them.
                max_block_ms=1000,
                delivery_timeout_ms=120_000,
                request_timeout_ms=10_000,
            )

        return cls(factory, metrics, capacity=capacity)

    def start(self) -> PredictionLog:
        """Start the publishing thread."""
        self._thread.start()
        return self

    def submit(self, event: Prediction) -> bool:
        """Queue ``event`` for publishing; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._dropped.inc()
            return False
        self._queued.inc()
        return True

    @property
    def pending(self) -> int:
        """Events waiting in the queue."""
        return self._queue.qsize()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish what is queued, for at most ``timeout_s``, then close."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)
        if self._producer is not None:
            self._producer.close(timeout=timeout_s)

    def _connect(self) -> Producer | None:
        while self._producer is None and not self._stopping.is_set():
            try:
                self._producer = self._factory()
            except Exception as exc:  # noqa: BLE001 - kafka-python raises many types
                log.warning("cannot reach Kafka for the prediction log", extra={"error": repr(exc)})
                self._stopping.wait(self._retry_s)
        return self._producer

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            producer = self._producer or self._connect()
            if producer is None:
                self._failed.inc()
                continue
            try:
                future = producer.publish(event)
            except Exception:  # noqa: BLE001 - a timeout while the broker is down
                self._failed.inc()
                continue
            future.add_callback(lambda _: self._published.inc())
            future.add_errback(lambda _: self._failed.inc())
