"""The model server's parts with fakes: the predict path, the swap, the shadow and the log."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from bottega.bus.journal import Journal
from bottega.bus.native import ProducerFull
from bottega.events import Prediction, Transaction
from services.serving.app import build_app
from services.serving.features import EntityRows
from services.serving.lifecycle import ModelRefresher
from services.serving.metrics import ServingMetrics
from services.serving.models import LoadedModel, ModelSlots
from services.serving.prediction_log import PredictionLog
from services.serving.predictor import Predictor
from services.serving.shadow import ShadowScorer

CARD = {"txn_count_1h": 2, "amount_mean_7d": 40.0, "last_txn_epoch_s": None}
BODY = {
    "card_id": "c-1",
    "merchant_id": "m-1",
    "amount": 80.0,
    "merchant_category": "grocery",
    "country": "FR",
    "card_country": "DE",
}


class Features:
    def read(self, txns: Sequence[Transaction]) -> list[EntityRows]:
        return [EntityRows(card=CARD if t.card_id == "c-1" else None, merchant=None) for t in txns]


def model(
    version: str, score: float = 0.25, fail: bool = False, alias: str = "champion"
) -> LoadedModel:
    def predict(frame: pd.DataFrame) -> Any:
        if fail:
            raise RuntimeError("boom")
        return np.full(len(frame), score)

    return LoadedModel("fraud-detector", version, alias, "registry", "cpu", predict)


class FakeProducer:
    """NativeProducer's API: publish queues, poll and flush report outcomes."""

    def __init__(self, capacity: int = 100, deliver: bool = True) -> None:
        self.sent: list[Prediction] = []
        self.capacity = capacity
        self.deliver = deliver
        self.queued: list[tuple[Prediction, Any]] = []
        self.on_delivery: Any = None
        self.arrived = threading.Condition()

    def __call__(self, on_delivery: Any) -> FakeProducer:
        self.on_delivery = on_delivery
        return self

    def publish(self, event: Prediction, *, payload: bytes | None = None, then: Any = None) -> None:
        assert payload is None or Prediction.from_bytes(payload) == event
        with self.arrived:
            if len(self.queued) >= self.capacity:
                raise ProducerFull("queue full")
            self.queued.append((event, then))
            self.arrived.notify()

    def poll(self, timeout: float) -> int:
        """Deliver what is queued; a producer told not to deliver (a broker away) holds it."""
        with self.arrived:  # librdkafka waits for an outcome; so does this
            if not self.queued or not self.deliver:
                self.arrived.wait(timeout)
            if not self.deliver:
                return 0
            delivered, self.queued = self.queued, []
            self.sent.extend(event for event, _ in delivered)
        for _, then in delivered:
            self.on_delivery(True)
            if then is not None:
                then(True)
        return len(delivered)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return len(self.queued)

    def __len__(self) -> int:
        return len(self.queued)


def build(
    slots: ModelSlots, producer: FakeProducer | None = None
) -> tuple[TestClient, ServingMetrics, PredictionLog]:
    metrics = ServingMetrics(CollectorRegistry())
    log = PredictionLog(producer if producer is not None else FakeProducer(), metrics).start()
    shadow = ShadowScorer(log, metrics, threshold=0.5, capacity=10).start()
    predictor = Predictor(Features(), slots, log, metrics, threshold=0.5, shadow=shadow)
    app = build_app(predictor, slots, metrics, device="cpu", max_batch=4, max_body_bytes=2048)
    return TestClient(app), metrics, log


def wait(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_predict_scores_logs_the_features_and_uses_defaults_for_unknown_entities() -> None:
    producer = FakeProducer()
    client, metrics, _ = build(ModelSlots(champion=model("3")), producer)
    answer = client.post("/predict", json=BODY).json()
    assert answer["model_version"] == "3" and answer["decision"] == "approve"
    assert answer["missing"] == ["merchant"]
    wait(lambda: len(producer.sent) == 1)
    logged = producer.sent[0]
    assert logged.arm == "champion" and logged.features["txn_count_1h"] == 2.0
    assert logged.features["country_mismatch"] == 1.0
    assert logged.features["merchant_fraud_rate_30d"] == 0.005  # the documented default
    value = metrics.missing_features.labels("merchant")._value.get()
    assert value == 1


def test_no_champion_is_a_503_and_bad_input_a_422_naming_the_field() -> None:
    client, _, _ = build(ModelSlots())
    assert client.post("/predict", json=BODY).status_code == 503
    bad = client.post("/predict", json={**BODY, "amount": -1})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "amount"
    big = client.post("/predict", content=b"{" + b" " * 4096 + b"}")
    assert big.status_code == 413


def test_a_failing_shadow_is_counted_and_never_reaches_the_answer() -> None:
    producer = FakeProducer()
    slots = ModelSlots(champion=model("3"), challenger=model("4", fail=True, alias="challenger"))
    client, metrics, log = build(slots, producer)
    assert client.post("/predict", json=BODY).status_code == 200
    wait(lambda: metrics.shadow.labels("failed")._value.get() == 1)
    log.stop()  # publishes everything buffered
    assert [p.arm for p in producer.sent] == ["champion"]


def prediction(i: int) -> Prediction:
    return Prediction(
        transaction_id=f"00000000-0000-0000-0000-{i:012d}",  # type: ignore[arg-type]
        card_id="c",
        model_name="m",
        model_version="1",
        score=0.1,
        threshold=0.5,
        decision=False,
        latency_ms=1.0,
    )


def test_a_full_log_drops_and_counts_without_blocking() -> None:
    metrics = ServingMetrics(CollectorRegistry())
    log = PredictionLog(FakeProducer(capacity=2), metrics)
    event = prediction(1)
    assert [log.submit(event) for _ in range(3)] == [True, True, False]
    assert metrics.prediction_log.labels("dropped")._value.get() == 1
    assert log.pending == 2


def test_a_refused_event_is_counted_as_failed_and_never_raises() -> None:
    class Refusing(FakeProducer):
        def publish(self, event: Prediction, **_: Any) -> None:
            raise ValueError("message too large")

    metrics = ServingMetrics(CollectorRegistry())
    log = PredictionLog(Refusing(), metrics)
    assert log.submit(prediction(1)) is False
    assert metrics.prediction_log.labels("failed")._value.get() == 1


def test_the_log_publishes_in_order_and_flushes_on_stop() -> None:
    producer = FakeProducer()
    metrics = ServingMetrics(CollectorRegistry())
    log = PredictionLog(producer, metrics, poll_s=0.01).start()
    events = [prediction(i) for i in range(5)]
    for event in events[:3]:
        log.submit(event)
    wait(lambda: len(producer.sent) == 3)  # the thread reports outcomes without being asked
    assert metrics.prediction_log.labels("published")._value.get() == 3
    for event in events[3:]:
        log.submit(event)
    log.stop()
    assert producer.sent == events
    assert metrics.prediction_log.labels("published")._value.get() == 5
    assert metrics.prediction_log.labels("queued")._value.get() == 5


def test_events_left_undelivered_at_stop_are_counted_as_failed() -> None:
    class Stuck(FakeProducer):
        def poll(self, timeout: float) -> int:
            return 0

        def flush(self, timeout: float) -> int:
            return len(self.queued)

    metrics = ServingMetrics(CollectorRegistry())
    log = PredictionLog(Stuck(), metrics, poll_s=0.01).start()
    for i in range(3):
        log.submit(prediction(i))
    log.stop(timeout_s=0.1)
    assert metrics.prediction_log.labels("failed")._value.get() == 3
    assert metrics.prediction_log.labels("published")._value.get() == 0


def test_a_dead_workers_journaled_predictions_are_published_by_the_next_one(
    tmp_path: Path,
) -> None:
    # The first worker's broker never answers, and it stops with three predictions queued:
    # its journal keeps them (a kill would leave them the same way, locks and all released).
    first = PredictionLog(
        FakeProducer(deliver=False),
        ServingMetrics(CollectorRegistry()),
        poll_s=0.01,
        journal=Journal(tmp_path),
    ).start()
    events = [prediction(i) for i in range(3)]
    for event in events:
        assert first.submit(event)
    first.stop(timeout_s=0.1)
    assert len(list(tmp_path.glob("*.journal"))) == 1
    # The next worker republishes them before anything else, once each, and then the segment
    # is gone.
    producer = FakeProducer()
    metrics = ServingMetrics(CollectorRegistry())
    second = PredictionLog(producer, metrics, poll_s=0.01, journal=Journal(tmp_path)).start()
    wait(lambda: len(producer.sent) == 3)
    assert producer.sent == events
    assert metrics.prediction_log.labels("republished")._value.get() == 3
    wait(lambda: not list(tmp_path.glob("*.journal")))
    later = prediction(9)
    second.submit(later)
    second.stop()
    assert producer.sent[3:] == [later]
    assert list(tmp_path.glob("*.journal")) == []


def test_a_journal_that_cannot_be_written_never_fails_a_prediction(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the journal's folder should be")
    producer = FakeProducer()
    metrics = ServingMetrics(CollectorRegistry())
    log = PredictionLog(producer, metrics, poll_s=0.01, journal=Journal(blocked)).start()
    assert log.submit(prediction(1)) and log.submit(prediction(2))
    log.stop()
    assert len(producer.sent) == 2
    assert metrics.prediction_log.labels("unjournaled")._value.get() == 2


def test_a_line_that_cannot_be_read_is_counted_and_the_rest_republished(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    good = prediction(1)
    first.append(b'{"not": "a prediction"}')
    first.append(good.to_bytes())
    first.close()
    producer = FakeProducer()
    metrics = ServingMetrics(CollectorRegistry())
    log = PredictionLog(producer, metrics, poll_s=0.01, journal=Journal(tmp_path)).start()
    wait(lambda: len(producer.sent) == 1)
    log.stop()
    assert producer.sent == [good]
    assert metrics.prediction_log.labels("failed")._value.get() == 1
    assert metrics.prediction_log.labels("republished")._value.get() == 1
    assert list(tmp_path.glob("*.journal")) == []


class Source:
    def __init__(self) -> None:
        self.current = {"champion": "1"}
        self.up = True

    def aliases(self) -> dict[str, str]:
        if not self.up:
            raise ConnectionError("mlflow is down")
        return dict(self.current)

    def load(self, version: str, alias: str) -> LoadedModel:
        return model(version, alias=alias)

    def load_cached(self, alias: str) -> LoadedModel | None:
        return LoadedModel("fraud-detector", "1", alias, "cache", "cpu", lambda f: np.zeros(len(f)))


def test_a_swap_leaves_a_request_in_flight_on_its_model() -> None:
    slots = ModelSlots()
    refresher = ModelRefresher(Source(), slots, ServingMetrics(CollectorRegistry()), shadow=True)
    refresher.refresh("start")
    started = slots.champion
    assert started is not None and started.version == "1"
    refresher.source.current = {"champion": "2"}  # type: ignore[attr-defined]
    refresher.refresh("event")
    assert started.version == "1" and slots.champion is not None and slots.champion.version == "2"


def test_registry_down_at_start_serves_the_cache_degraded() -> None:
    source = Source()
    source.up = False
    slots = ModelSlots()
    ModelRefresher(source, slots, ServingMetrics(CollectorRegistry()), shadow=True).refresh("start")
    assert slots.champion is not None and slots.champion.source == "cache" and slots.degraded


def test_concurrent_refreshes_load_once() -> None:
    loads = []

    class Counting(Source):
        def load(self, version: str, alias: str) -> LoadedModel:
            loads.append(version)
            time.sleep(0.05)
            return super().load(version, alias)

    slots = ModelSlots()
    refresher = ModelRefresher(Counting(), slots, ServingMetrics(CollectorRegistry()), shadow=True)
    threads = [threading.Thread(target=refresher.refresh, args=("poll",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["1"]


@pytest.mark.parametrize("payload", [{"transactions": []}, {"transactions": [BODY] * 5}])
def test_batches_are_bounded(payload: dict[str, Any]) -> None:
    client, _, _ = build(ModelSlots(champion=model("3")))
    assert client.post("/predict_batch", json=payload).status_code == 422


@pytest.mark.parametrize("traced", [False, True])
def test_bentoml_traces_requests_only_when_asked(traced: bool) -> None:
    from opentelemetry.util.http import parse_excluded_urls

    from services.serving.__main__ import serve_environment
    from services.serving.settings import ServingSettings

    settings = ServingSettings(serve={"trace_requests": traced})  # type: ignore[arg-type]
    options = dict(
        option.split("=", 1)
        for option in serve_environment(settings)["BENTOML_CONFIG_OPTIONS"].split()
    )
    excluded = options.get("services.bottega_serving.tracing.excluded_urls")
    if traced:
        assert excluded is None
    else:
        # BentoML hands a string to OpenTelemetry's parser; every route must match it.
        assert excluded is not None
        urls = parse_excluded_urls(excluded)
        for route in ("/predict", "/predict_batch", "/model", "/readyz", "/metrics"):
            assert urls.url_disabled(f"http://127.0.0.1:3000{route}")
