"""The monitor's analysis with a fake reference source: drift metrics, reports, reference swap."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from bottega.bus import Envelope
from bottega.events import Label, ModelEvent, Prediction
from bottega.usecases.fraud.features.request import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from services.monitor.reference import Reference
from services.monitor.service import MonitorService
from services.monitor.settings import MonitorOptions, MonitorSettings

T0 = datetime(2025, 3, 3, tzinfo=UTC)
CATEGORIES = ("grocery", "fuel", "electronics")


def features(rng: np.random.Generator, n: int, amount_shift: float = 0.0) -> pd.DataFrame:
    frame = pd.DataFrame({f: rng.normal(0.0, 1.0, n) for f in NUMERIC_FEATURES})
    for f in ("log_amount", "amount_to_mean_7d", "amount_sum_1h", "amount_sum_24h"):
        frame[f] += amount_shift
    frame["merchant_category"] = rng.choice(CATEGORIES, n)
    frame["country"] = rng.choice(("FR", "DE"), n)
    return frame


class FakeSource:
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.frames = {}
        for version in ("1", "2"):
            frame = features(rng, 1000, amount_shift=0.0 if version == "1" else 3.0)
            frame["is_fraud"] = False
            frame["score"] = rng.beta(1, 20, 1000)
            self.frames[version] = frame
        self.champion = "1"

    def champion_version(self) -> str | None:
        return self.champion

    def load(self, version: str) -> Reference:
        return Reference("fraud-detector", version, self.frames[version], {"pr_auc": 0.5})


def envelopes(frame: pd.DataFrame, start: datetime, rng: np.random.Generator) -> list[Any]:
    out: list[Any] = []
    every = timedelta(hours=1) / len(frame)
    for i, row in enumerate(frame.to_dict("records")):
        score = float(rng.beta(1, 20))
        p = Prediction(
            event_time=start + i * every,
            transaction_id=uuid.uuid4(),
            card_id="c",
            model_name="fraud-detector",
            model_version="1",
            score=score,
            threshold=0.5,
            decision=score >= 0.5,
            features={k: row[k] for k in (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)},
            latency_ms=1.0,
        )
        out.append(Envelope(p, "predictions", 0, i))
        label = Label(
            event_time=p.event_time + timedelta(minutes=5),
            transaction_id=p.transaction_id,
            card_id="c",
            is_fraud=i % 50 == 0,
            transaction_time=p.event_time,
        )
        out.append(Envelope(label, "labels", 0, i))
    return out


def service(tmp_path: Path, source: FakeSource) -> MonitorService:
    settings = MonitorSettings(  # type: ignore[call-arg]
        _env_file=None,
        home=tmp_path,
        monitoring=MonitorOptions(
            window=timedelta(hours=1),
            step=timedelta(hours=1),
            label_wait=timedelta(0),
            lateness=timedelta(0),
            min_rows=100,
        ),
    )
    return MonitorService(settings, source=source, registry=CollectorRegistry())


def drain(monitor: MonitorService) -> None:
    while monitor._pending:
        monitor.analyze_window(monitor._pending.popleft())


def gauge(monitor: MonitorService, name: str, **labels: str) -> float:
    value = monitor.registry.get_sample_value(name, labels)
    assert value is not None, f"{name}{labels} is not exported"
    return value


def test_a_shifted_window_drifts_and_a_steady_one_does_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    monitor = service(tmp_path, FakeSource())
    assert monitor.refresh_reference()
    monitor.handle(envelopes(features(rng, 600), T0, rng))
    monitor.handle(envelopes(features(rng, 600, amount_shift=3.0), T0 + timedelta(hours=1), rng))
    monitor.handle(envelopes(features(rng, 10), T0 + timedelta(hours=2), rng))
    steady, drifted = list(monitor._pending)[:2]
    monitor._pending.clear()

    monitor.analyze_window(steady)
    # A single feature may cross its threshold by chance; the alert asks for a share of 0.2.
    assert gauge(monitor, "bottega_drift_share") < 0.2
    assert (
        gauge(monitor, "bottega_feature_drift_score", feature="log_amount", method="wasserstein")
        < 0.1
    )
    assert gauge(monitor, "bottega_online_metric", metric="label_coverage") == 1.0

    monitor.analyze_window(drifted)
    share = gauge(monitor, "bottega_drift_share")
    assert 0.2 < share < 0.5  # the four amount features of 17 tested
    assert (
        gauge(monitor, "bottega_feature_drift_score", feature="log_amount", method="wasserstein")
        > 1
    )
    assert gauge(monitor, "bottega_feature_drift_detected", feature="log_amount") == 1
    assert gauge(monitor, "bottega_feature_drift_detected", feature="txn_count_1h") == 0
    assert (
        gauge(monitor, "bottega_monitor_reference_info", model="fraud-detector", version="1") == 1
    )
    assert len(monitor.reports.list()) == 2
    newest = monitor.reports.list()[0]
    assert newest["drifted_features"] == sorted(
        ["log_amount", "amount_to_mean_7d", "amount_sum_1h", "amount_sum_24h"]
    )
    assert monitor.reports.html(newest["name"]) is not None


def test_a_small_window_exports_no_drift_rather_than_a_stale_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    monitor = service(tmp_path, FakeSource())
    monitor.refresh_reference()
    monitor.handle(envelopes(features(rng, 50), T0, rng))
    monitor.handle(envelopes(features(rng, 5), T0 + timedelta(hours=1), rng))
    drain(monitor)
    assert math.isnan(gauge(monitor, "bottega_drift_share"))
    assert gauge(monitor, "bottega_monitor_windows_total", outcome="too_small") == 1
    assert monitor.reports.list() == []


def test_a_new_champion_switches_the_reference_on_a_model_event(tmp_path: Path) -> None:
    source = FakeSource()
    monitor = service(tmp_path, source)
    monitor.refresh_reference()
    source.champion = "2"
    event = ModelEvent(model_name="fraud-detector", version="2", action="promoted")
    monitor.handle([Envelope(event, "model-events", 0, 0)])
    assert monitor._refresh_requested
    assert monitor.refresh_reference()
    assert monitor.reference is not None and monitor.reference.version == "2"
    assert (
        gauge(monitor, "bottega_monitor_reference_info", model="fraud-detector", version="2") == 1
    )
    assert (
        monitor.registry.get_sample_value(
            "bottega_monitor_reference_info", {"model": "fraud-detector", "version": "1"}
        )
        is None
    )
    assert not monitor.refresh_reference()  # same champion: nothing to reload
