"""The monitor as a real process against the real Kafka broker and MLflow server, with the
champion that ``bottega bootstrap`` registered: a steady window stays under the drift threshold,
a window whose amount features are shifted hard drifts, quality is computed from labels joined
by transaction id, and each window's report is listed and served."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bottega.bus import Producer
from bottega.events import Label, Prediction
from bottega.registry import MODEL_NAMES
from bottega.usecases.fraud.features.request import MODEL_FEATURES
from services.monitor.reference import MlflowReferenceSource

from .conftest import Bootstrapped, free_ports, service_env, service_process, wait_for

NAME = MODEL_NAMES["fraud"]
# Event time far from any other test's, aligned to the 10-minute windows below.
T0 = datetime(2031, 1, 6, 12, 0, tzinfo=UTC)
ROWS = 400
LABELLED = 0.8


@pytest.fixture()
def monitor(bootstrapped: Bootstrapped, project_root: Path) -> Iterator[str]:
    (port,) = free_ports(1)
    env = service_env(
        bootstrapped.settings,
        project_root,
        BOTTEGA_MONITOR__PORT=str(port),
        BOTTEGA_MONITORING__GROUP=f"monitor-test-{uuid.uuid4().hex[:8]}",
        BOTTEGA_MONITORING__WINDOW="10m",
        BOTTEGA_MONITORING__STEP="10m",
        BOTTEGA_MONITORING__LABEL_WAIT="0s",
        BOTTEGA_MONITORING__LATENESS="0s",
        BOTTEGA_MONITORING__MIN_ROWS="100",
        BOTTEGA_MONITORING__REFERENCE_POLL_S="1",
        BOTTEGA_MONITORING__LINGER_MS="0",
    )
    url = f"http://127.0.0.1:{port}"
    with service_process("services.monitor", env, url, bootstrapped.home / "logs" / "monitor.log"):
        yield url


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def publish(
    producer: Producer, rows: pd.DataFrame, start: datetime, version: str, rng: np.random.Generator
) -> tuple[int, int]:
    """Predictions spread over ten minutes from ``start``; labels for 80% of them."""
    every = timedelta(minutes=10) / len(rows)
    labelled = frauds = 0
    for i, row in enumerate(rows.to_dict("records")):
        score = float(row["score"])
        p = Prediction(
            event_time=start + i * every,
            transaction_id=uuid.uuid4(),
            card_id=f"card-{i % 50}",
            model_name=NAME,
            model_version=version,
            score=score,
            threshold=0.5,
            decision=score >= 0.5,
            features={f: plain(row[f]) for f in MODEL_FEATURES},
            latency_ms=2.0,
        )
        producer.publish(p)
        if rng.random() < LABELLED:
            labelled += 1
            frauds += bool(row["is_fraud"])
            producer.publish(
                Label(
                    event_time=p.event_time + timedelta(seconds=90),
                    transaction_id=p.transaction_id,
                    card_id=p.card_id,
                    is_fraud=bool(row["is_fraud"]),
                    transaction_time=p.event_time,
                )
            )
    producer.flush(30)
    return labelled, frauds


def shifted(rows: pd.DataFrame) -> pd.DataFrame:
    """The amounts of a big-ticket fraud wave: every amount feature moved far out."""
    out = rows.copy()
    out["log_amount"] += 2.5
    for column in ("amount_to_mean_7d", "amount_sum_1h", "amount_sum_24h", "amount_mean_7d"):
        out[column] = out[column] * 8 + 500
    out["merchant_category"] = "electronics"
    out["score"] = np.clip(out["score"] ** 0.3, 0, 1)
    return out


def test_drift_quality_and_reports_on_real_windows(
    monitor: str, bootstrapped: Bootstrapped
) -> None:
    source = MlflowReferenceSource(bootstrapped.settings.mlflow_tracking_uri, NAME)
    version = source.champion_version()
    assert version is not None
    reference = source.load(version).frame
    # Sampled with a different seed from the reference rows the monitor compares with.
    rng = np.random.default_rng(7)
    steady = reference.sample(n=ROWS, replace=True, random_state=1).reset_index(drop=True)
    drifted = shifted(reference.sample(n=ROWS, replace=True, random_state=2).reset_index(drop=True))

    wait_for(
        lambda: httpx.get(f"{monitor}/status", timeout=5).json()["reference_version"] == version,
        timeout_s=60,
        what="the monitor to load the champion's reference",
    )
    producer = Producer(bootstrapped.settings.kafka, client_id="monitor-test")
    try:
        labelled, frauds = publish(producer, steady, T0, version, rng)
        publish(producer, drifted, T0 + timedelta(minutes=10), version, rng)
        # One prediction past the second window's end closes it.
        publish(producer, steady.head(1), T0 + timedelta(minutes=20), version, rng)
    finally:
        producer.close(timeout=10)

    def two_reports() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = httpx.get(f"{monitor}/reports", timeout=5).json()
        return found if len(found) >= 2 else None

    reports = wait_for(two_reports, timeout_s=120, what="two window reports")
    assert isinstance(reports, list)
    by_end = {r["window_end"]: r for r in reports}
    first = by_end[(T0 + timedelta(minutes=10)).isoformat()]
    second = by_end[(T0 + timedelta(minutes=20)).isoformat()]

    # The steady window stays under the alert's threshold; the shifted one crosses it.
    assert first["rows"] == ROWS and second["rows"] == ROWS
    assert first["model_version"] == version
    assert first["drift_share"] < 0.2, first
    assert first["prediction_drift_score"] < 0.2, first
    assert second["drift_share"] >= 0.3, second
    assert {"log_amount", "amount_sum_24h", "merchant_category"} <= set(second["drifted_features"])
    assert second["prediction_drift_score"] > 0.2

    # Quality of the steady window, from labels joined by transaction id.
    online = first["online"]
    assert online["labelled"] == labelled
    assert online["label_coverage"] == pytest.approx(labelled / ROWS)
    assert online["labelled_frauds"] == frauds
    assert online["label_delay_seconds"] == pytest.approx(90)
    if frauds:
        assert 0 < online["pr_auc"] <= 1 and online["log_loss"] > 0

    # The last window's numbers are exported under DESIGN.md's names.
    metrics = scrape(monitor)
    assert metrics[("bottega_drift_share", ())] == pytest.approx(second["drift_share"])
    assert metrics[("bottega_prediction_drift_score", ())] > 0.2
    log_amount = metrics[
        ("bottega_feature_drift_score", (("feature", "log_amount"), ("method", "wasserstein")))
    ]
    assert log_amount > 0.1
    assert (
        "bottega_feature_drift_score",
        (("feature", "merchant_category"), ("method", "jensenshannon")),
    ) in metrics
    coverage = metrics[("bottega_online_metric", (("metric", "label_coverage"),))]
    assert not math.isnan(coverage) and 0.6 < coverage < 1.0
    assert metrics[("bottega_monitor_windows_total", (("outcome", "analyzed"),))] >= 2
    assert metrics[("bottega_monitor_reference_info", (("model", NAME), ("version", version)))] == 1
    assert (
        metrics[("bottega_monitor_last_window_end_timestamp_seconds", ())]
        == (T0 + timedelta(minutes=20)).timestamp()
    )

    page = httpx.get(f"{monitor}/reports/{second['name']}", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text.lower()
    assert httpx.get(f"{monitor}/reports/..%2Fsecrets", timeout=5).status_code == 404
