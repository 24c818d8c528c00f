"""The monitor service: one consumer feeds the windows, one analysis thread runs the reports.

The consumer thread reads ``predictions``, ``labels`` and ``model-events`` in one group, adds
each event to the windows and queues the windows that close; it never waits on Evidently. The
analysis thread computes drift and quality for each queued window, exports the metrics and saves
the report. It also keeps the reference sample on the current champion: a ``ModelEvent`` asks
for a check at once, and the alias is polled as a fallback, so a new champion is picked up
without a restart. When analysis falls behind, the oldest queued windows are skipped (and
counted): the newest window is the one an alert needs.

Windows live in memory: a restart loses the windows that were still open, and the monitor
resumes from its committed offsets. While it catches up, the partitions it has not read to
their end hold the watermark back, so no window closes before its rows are read.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from bottega.bus import BusMetrics, Consumer, Envelope, Producer
from bottega.events import Label, ModelEvent, Prediction
from bottega.registry import MODEL_NAMES
from bottega.usecases.fraud.features.request import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from services.monitor.drift import DriftConfig, analyze, frame_of
from services.monitor.metrics import MonitorMetrics
from services.monitor.quality import online_quality
from services.monitor.reference import MlflowReferenceSource, Reference, ReferenceSource
from services.monitor.reports import ReportStore
from services.monitor.settings import MonitorSettings
from services.monitor.windows import Window, Windows, WindowSpec

log = logging.getLogger(__name__)

REFERENCE_METRICS = ("pr_auc", "log_loss", "roc_auc")


def drift_config(settings: MonitorSettings) -> DriftConfig:
    """The tested features and the methods, from settings."""
    options = settings.monitoring
    excluded = set(options.excluded_features)
    return DriftConfig(
        numerical=tuple(f for f in NUMERIC_FEATURES if f not in excluded),
        categorical=tuple(f for f in CATEGORICAL_FEATURES if f not in excluded),
        num_method=options.num_method,
        num_threshold=options.num_threshold,
        cat_method=options.cat_method,
        cat_threshold=options.cat_threshold,
        prediction_method=options.prediction_method,
        prediction_threshold=options.prediction_threshold,
    )


def window_spec(settings: MonitorSettings) -> WindowSpec:
    """The window sizes, from settings."""
    options = settings.monitoring
    return WindowSpec(options.window, options.step, options.label_wait, options.lateness)


class MonitorService:
    """Consumes, windows, analyzes, exports; until stopped."""

    def __init__(
        self,
        settings: MonitorSettings,
        *,
        source: ReferenceSource | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.options = settings.monitoring
        self.registry = registry or CollectorRegistry()
        self.metrics = MonitorMetrics(self.registry)
        self.bus_metrics = BusMetrics(self.registry)
        self.source = source or MlflowReferenceSource(
            settings.mlflow_tracking_uri, MODEL_NAMES["fraud"]
        )
        self.config = drift_config(settings)
        self.windows = Windows(window_spec(settings))
        self.reports = ReportStore(settings.reports_path, self.options.max_reports)
        self.reference: Reference | None = None
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._work = threading.Condition()
        self._pending: collections.deque[Window] = collections.deque()
        self._refresh_requested = True
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._consumer: Consumer | None = None
        self._dead_letters: Producer | None = None
        self._analyzed = 0

    @property
    def ready(self) -> bool:
        """True once the consumer runs."""
        return self._ready.is_set()

    def handle(self, batch: Sequence[Envelope[Any]]) -> None:
        """The consumer's handler: feed the windows, queue the closed ones."""
        model_events = 0
        with self._lock:
            for env in batch:
                event = env.event
                source = (env.topic, env.partition)
                if isinstance(event, Prediction):
                    self.windows.add_prediction(event, source)
                    self.metrics.events.labels(f"prediction_{event.arm}").inc()
                elif isinstance(event, Label):
                    self.windows.add_label(event, source)
                    self.metrics.events.labels("label").inc()
                elif isinstance(event, ModelEvent):
                    model_events += 1
                    self.metrics.events.labels("model_event").inc()
            closed = self.windows.advance(self._unread())
        if closed or model_events:
            with self._work:
                self._pending.extend(closed)
                while len(self._pending) > self.options.max_pending_windows:
                    self._pending.popleft()
                    self.metrics.windows.labels("skipped").inc()
                if model_events:
                    self._refresh_requested = True
                self._work.notify_all()

    def _unread(self) -> set[tuple[str, int]]:
        """The partitions of the windowed topics still behind their end: they hold the watermark.

        After a restart the consumer reads one partition's backlog before another's; without
        this, the first partition's newer events would close windows whose rows still wait in
        the others.
        """
        if self._consumer is None:
            return set()
        topics = (Prediction.topic, Label.topic)
        return {(tp.topic, tp.partition) for tp in self._consumer.unread(topics)}

    def start(self) -> MonitorService:
        """Start the analysis thread and the consumer."""
        kafka = self.settings.kafka
        self._dead_letters = Producer(
            kafka, client_id="bottega-monitor-dlq", metrics=self.bus_metrics
        )
        self._consumer = Consumer(
            kafka,
            group_id=self.options.group,
            topics={
                Prediction.topic: Prediction,
                Label.topic: Label,
                ModelEvent.topic: ModelEvent,
            },
            handler=self.handle,
            dead_letters=self._dead_letters,
            max_batch=self.options.max_batch,
            linger_ms=self.options.linger_ms,
            metrics=self.bus_metrics,
            client_id="bottega-monitor",
        )
        for target, name in ((self._analysis_loop, "analysis"), (self._consume, "consumer")):
            thread = threading.Thread(target=target, name=f"monitor-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._ready.set()
        self.metrics.ready.set(1)
        log.info("monitor ready", extra={"port": self.settings.monitor.port})
        return self

    def _consume(self) -> None:
        assert self._consumer is not None
        self._consumer.run(self.stop_event)

    def _analysis_loop(self) -> None:
        next_poll = 0.0
        while not self.stop_event.is_set():
            with self._work:
                if not self._pending and not self._refresh_requested:
                    self._work.wait(timeout=max(0.0, next_poll - time.monotonic()))
                refresh = self._refresh_requested or time.monotonic() >= next_poll
                self._refresh_requested = False
                window = self._pending.popleft() if self._pending else None
            if self.stop_event.is_set():
                return
            if refresh:
                next_poll = time.monotonic() + self.options.reference_poll_s
                self.refresh_reference()
            if window is not None:
                self.analyze_window(window)

    def refresh_reference(self) -> bool:
        """Switch to the current champion's reference sample if the champion changed."""
        try:
            version = self.source.champion_version()
            if version is None or (self.reference and self.reference.version == version):
                return False
            reference = self.source.load(version)
        except Exception:  # the registry being down must not stop the monitor; it retries
            log.warning("could not read the champion's reference sample", exc_info=True)
            return False
        previous = self.reference.version if self.reference else None
        self.reference = reference
        self.metrics.reference_info.clear()
        self.metrics.reference_info.labels(reference.model_name, reference.version).set(1)
        for metric in REFERENCE_METRICS:
            self.metrics.reference_metric.labels(metric).set(
                reference.metrics.get(metric, math.nan)
            )
        log.info("monitoring a new champion", extra={"version": version, "previous": previous})
        return True

    def analyze_window(self, window: Window) -> None:
        """Quality and drift of one closed window: metrics, then the report."""
        started = time.perf_counter()
        m = self.metrics
        quality = online_quality(window)
        for name, value in quality.items():
            m.online.labels(name).set(value)
        m.window_rows.labels("champion").set(len(window.predictions))
        m.window_rows.labels("other_arms").set(window.other_arms)
        m.window_rows.labels("quality").set(window.quality_rows)
        m.window_end.set(window.end.timestamp())
        m.window_analyzed.set(time.time())
        reference = self.reference
        if len(window.predictions) < self.options.min_rows or reference is None:
            # No drift number rather than a stale one: an alert must not fire on old news.
            self._clear_drift()
            m.windows.labels("too_small" if reference else "no_reference").inc()
            return
        try:
            result = analyze(
                reference.frame,
                frame_of(window.predictions, self.config.features),
                self.config,
                metadata={"window_end": window.end.isoformat(), "version": reference.version},
            )
        except Exception:  # a report that fails must not stop the monitor; it is counted
            log.exception("drift analysis failed", extra={"window_end": window.end.isoformat()})
            self._clear_drift()
            m.windows.labels("failed").inc()
            return
        m.feature_drift.clear()
        for feature, score in result.feature_scores.items():
            m.feature_drift.labels(feature, self.config.method_of(feature)).set(score)
            m.feature_drifted.labels(feature).set(float(result.drifted.get(feature, False)))
        m.drift_share.set(result.share)
        m.prediction_drift.set(result.prediction_score)
        summary = {
            "window_start": window.start.isoformat(),
            "window_end": window.end.isoformat(),
            "model_version": reference.version,
            "rows": len(window.predictions),
            "drift_share": result.share,
            "prediction_drift_score": result.prediction_score,
            "drifted_features": sorted(f for f, d in result.drifted.items() if d),
            # Quality is measured on an older window, once its labels have had time to arrive.
            "quality_window_start": window.quality_start.isoformat(),
            "quality_window_end": window.quality_end.isoformat(),
            "online": {k: (None if math.isnan(v) else v) for k, v in quality.items()},
            "created": datetime.now(UTC).isoformat(),
        }
        name = f"{window.end:%Y%m%dT%H%M%SZ}-v{reference.version}"
        self.reports.save(name, summary, lambda path: result.save_html(str(path)))
        m.windows.labels("analyzed").inc()
        m.analysis_seconds.observe(time.perf_counter() - started)
        self._analyzed += 1
        log.info(
            "window analyzed",
            extra={
                "window_end": window.end.isoformat(),
                "rows": len(window.predictions),
                "drift_share": result.share,
                "prediction_drift": result.prediction_score,
                "pr_auc": quality["pr_auc"],
            },
        )

    def _clear_drift(self) -> None:
        self.metrics.feature_drift.clear()
        self.metrics.feature_drifted.clear()
        self.metrics.drift_share.set(math.nan)
        self.metrics.prediction_drift.set(math.nan)

    def stop(self) -> None:
        """Stop both threads and leave the group."""
        self.stop_event.set()
        with self._work:
            self._work.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        if self._consumer is not None:
            self._consumer.close()
        if self._dead_letters is not None:
            self._dead_letters.close(timeout=10)
        self._ready.clear()
        self.metrics.ready.set(0)
