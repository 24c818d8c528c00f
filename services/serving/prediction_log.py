"""The prediction log: every prediction published to ``predictions``, off the request path.

A request only appends its events to a bounded in-memory buffer. One thread wakes every
``interval_s`` (20 ms), takes everything buffered and hands it to the bus
:class:`~bottega.bus.Producer`, whose own buffer batches it to the broker. The request wakes
nothing: a thread woken per prediction took the GIL from the request thread each time that
thread let go of it (to read the online store, to write the answer). With it, the log added
about 0.4 ms to the median request at 200 a second; since, about 0.1 ms (``docs/serving.md``).
Nothing here ever blocks scoring:

- a full buffer drops the event and counts ``bottega_prediction_log_total{outcome="dropped"}``;
- a send the broker refuses, or that times out while the broker is down, counts
  ``outcome="failed"`` (and the bus's ``produce_failed``);
- events still buffered when the process is killed are lost; a clean stop flushes for a
  bounded time.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from bottega.bus import BusMetrics, Producer
from bottega.events import Prediction
from bottega.settings import KafkaSettings
from services.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)


class PredictionLog:
    """A bounded buffer and one publishing thread."""

    def __init__(
        self,
        producer_factory: Callable[[], Producer],
        metrics: ServingMetrics,
        *,
        capacity: int,
        retry_s: float = 2.0,
        interval_s: float = 0.02,
    ) -> None:
        self._factory = producer_factory
        self._metrics = metrics
        # deque's append and popleft are atomic: the request threads append, the publishing
        # thread pops. The bound is checked before the append, so with several request threads
        # it can be passed by one event per thread.
        self._buffer: deque[Prediction] = deque()
        self._capacity = capacity
        self._retry_s = retry_s
        self._interval_s = interval_s
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
                # One produce request per ``linger_ms`` instead of one per prediction: the
                # kafka-python sender is pure Python, and at 200 predictions a second its
                # per-request work cost more CPU than the feature lookup. The monitor reads
                # predictions in windows of simulated hours, so 50 ms changes nothing there.
                linger_ms=50,
                delivery_timeout_ms=120_000,
                request_timeout_ms=10_000,
            )

        return cls(factory, metrics, capacity=capacity)

    def start(self) -> PredictionLog:
        """Start the publishing thread."""
        self._thread.start()
        return self

    def submit(self, event: Prediction) -> bool:
        """Buffer ``event`` for publishing; False (and counted) when the buffer is full."""
        if len(self._buffer) >= self._capacity:
            self._dropped.inc()
            return False
        self._buffer.append(event)
        self._queued.inc()
        return True

    @property
    def pending(self) -> int:
        """Events waiting in the buffer."""
        return len(self._buffer)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish what is buffered, for at most ``timeout_s``, then close."""
        self._stopping.set()
        self._thread.join(timeout_s)
        if self._producer is not None:
            self._producer.close(timeout=timeout_s)

    def _connect(self) -> Producer | None:
        # At least one try, even when stopping: the last events may be the first ones.
        while self._producer is None:
            try:
                self._producer = self._factory()
            except Exception as exc:  # noqa: BLE001 - kafka-python raises many types
                log.warning("cannot reach Kafka for the prediction log", extra={"error": repr(exc)})
                if self._stopping.wait(self._retry_s):
                    break
        return self._producer

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while self._buffer:
            producer = self._producer or self._connect()
            if producer is None:  # stopping, and Kafka could not be reached
                self._failed.inc(len(self._buffer))
                self._buffer.clear()
                return
            event = self._buffer.popleft()
            try:
                future = producer.publish(event)
            except Exception:  # noqa: BLE001 - a timeout while the broker is down
                self._failed.inc()
                continue
            future.add_callback(lambda _: self._published.inc())
            future.add_errback(lambda _: self._failed.inc())
