"""The monitor's Prometheus metrics (names as DESIGN.md gives them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class MonitorMetrics:
    """Registered on the registry the process serves."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.feature_drift = Gauge(
            "bottega_feature_drift_score",
            "Drift score of each feature in the last window against the champion's reference.",
            ["feature", "method"],
            registry=registry,
        )
        self.feature_drifted = Gauge(
            "bottega_feature_drift_detected",
            "1 when the feature's drift score crossed its method's threshold in the last window.",
            ["feature"],
            registry=registry,
        )
        self.drift_share = Gauge(
            "bottega_drift_share",
            "Share of the tested features that drifted in the last window.",
            registry=registry,
        )
        self.prediction_drift = Gauge(
            "bottega_prediction_drift_score",
            "Drift score of the champion's score distribution in the last window.",
            registry=registry,
        )
        self.online = Gauge(
            "bottega_online_metric",
            "Online quality of the champion on the last labelled window (NaN where undefined).",
            ["metric"],
            registry=registry,
        )
        self.reference_metric = Gauge(
            "bottega_monitor_reference_metric",
            "The monitored champion's offline holdout metrics, to read the online ones against.",
            ["metric"],
            registry=registry,
        )
        self.reference_info = Gauge(
            "bottega_monitor_reference_info",
            "1 for the model version whose reference sample the monitor compares with.",
            ["model", "version"],
            registry=registry,
        )
        self.windows = Counter(
            "bottega_monitor_windows_total",
            "Windows closed, by what was done with them (analyzed, too_small, no_reference, "
            "skipped).",
            ["outcome"],
            registry=registry,
        )
        self.window_end = Gauge(
            "bottega_monitor_last_window_end_timestamp_seconds",
            "Event-time end of the last analyzed window (Unix time, simulated clock).",
            registry=registry,
        )
        self.window_analyzed = Gauge(
            "bottega_monitor_last_window_analyzed_timestamp_seconds",
            "Wall-clock time the last window was analyzed (Unix time).",
            registry=registry,
        )
        self.window_rows = Gauge(
            "bottega_monitor_window_rows",
            "Rows of the last window: champion predictions, other arms, quality rows.",
            ["kind"],
            registry=registry,
        )
        self.events = Counter(
            "bottega_monitor_events_total",
            "Events consumed, by kind (prediction arm, label, model event).",
            ["kind"],
            registry=registry,
        )
        self.analysis_seconds = Histogram(
            "bottega_monitor_analysis_seconds",
            "Time to analyze one window (Evidently report, quality, HTML).",
            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
            registry=registry,
        )
        self.ready = Gauge(
            "bottega_monitor_ready", "1 once the monitor consumes.", registry=registry
        )
