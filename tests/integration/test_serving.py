"""The model server on a real stack (see ``serving_stack``): scores that match the registered
model offline, a prediction log and a training set that carry the very same feature values,
bad input refused with the field named, a failing shadow that the champion never notices, a
promotion under load without a failed request, a rollback followed in seconds, and a start
from the local cache while MLflow is down.

The tests share one server and run in file order: the later ones move the aliases.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import cloudpickle
import httpx
import mlflow
import pandas as pd
import pytest
from kafka import KafkaConsumer, TopicPartition

from bottega.bus import Producer
from bottega.events import Prediction, Transaction
from bottega.features.training import training_set
from bottega.registry import CHALLENGER, CHAMPION, TAG_PREVIOUS_CHAMPION
from bottega.stack.runner import LocalStack
from bottega.stack.services import serving_service
from bottega.usecases.fraud.features.request import CATEGORICAL_FEATURES, MODEL_FEATURES
from bottega.usecases.fraud.store import FraudFeatureStore
from tests.integration import exploding_model
from tests.integration.conftest import free_ports, wait_for
from tests.integration.serving_stack import NAME, Served


def sample_requests(served: Served, count: int) -> list[dict[str, Any]]:
    """Transactions for ``count`` distinct known cards, plus one card and merchant never seen.

    Distinct cards: a card's second transaction must not be scored before the ingest has
    written its first, or serving and training would rightly see different rows.
    """
    fs = FraudFeatureStore(served.settings)
    rows = fs.transactions.query(
        "SELECT * FROM t QUALIFY row_number() OVER "
        "(PARTITION BY card_id ORDER BY event_timestamp DESC) = 1 ORDER BY card_id LIMIT ?",
        [count],
    ).to_pylist()
    now = datetime.now(UTC)
    rng = random.Random(7)
    bodies = [
        {
            "event_id": str(uuid.uuid4()),
            "event_time": (now + timedelta(milliseconds=i)).isoformat(),
            "card_id": row["card_id"],
            "merchant_id": row["merchant_id"],
            "amount": round(rng.uniform(2, 900), 2),
            "currency": "EUR",
            "merchant_category": row["merchant_category"],
            "country": row["country"],
            "card_country": row["card_country"],
            "channel": row["channel"],
            "device_id": row["device_id"],
        }
        for i, row in enumerate(rows)
    ]
    stranger = dict(bodies[0])
    stranger.update(
        event_id=str(uuid.uuid4()),
        event_time=(now + timedelta(milliseconds=len(bodies))).isoformat(),
        card_id=f"card-never-seen-{uuid.uuid4().hex[:6]}",
        merchant_id=f"merchant-never-seen-{uuid.uuid4().hex[:6]}",
    )
    return [*bodies, stranger]


def read_predictions(
    served: Served, ids: set[str], arm: str = "champion", timeout_s: float = 60
) -> dict[str, Prediction]:
    """The logged predictions of ``arm`` for ``ids``, read from the start of ``predictions``."""
    consumer = KafkaConsumer(
        bootstrap_servers=served.settings.kafka.bootstrap_servers, group_id=None
    )
    try:
        parts = [
            TopicPartition(Prediction.topic, p)
            for p in sorted(consumer.partitions_for_topic(Prediction.topic) or ())
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        found: dict[str, Prediction] = {}
        deadline = time.monotonic() + timeout_s
        while set(found) != ids and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    # Other producers share this broker's log (the poison tests write bad
                    # predictions to it on purpose): parse only what names one of ``ids``.
                    if record.value is None or not any(i.encode() in record.value for i in ids):
                        continue
                    event = Prediction.from_bytes(record.value)
                    key = str(event.transaction_id)
                    if key in ids and event.arm == arm:
                        found[key] = event
        return found
    finally:
        consumer.close()


def same_features(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The model features on which ``a`` and ``b`` differ."""
    differ = []
    for name in MODEL_FEATURES:
        if name in CATEGORICAL_FEATURES:
            if str(a[name]) != str(b[name]):
                differ.append(name)
        elif abs(float(a[name]) - float(b[name])) > 1e-9 * max(1.0, abs(float(a[name]))):
            differ.append(name)
    return differ


def post(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_server_reports_its_model_health_and_metrics(served: Served) -> None:
    report = served.model()
    assert report["state"] == "serving"
    assert report["champion"]["version"] == served.champion
    assert report["champion"]["source"] == "registry"
    assert report["device"] in {"cpu", "cuda"}
    assert report["aliases"][CHAMPION] == served.champion
    with served.client() as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/livez").status_code == 200
        post(client, sample_requests(served, 1)[0])
        metrics = client.get("/metrics").text
    assert 'bottega_prediction_latency_seconds_bucket{le="0.005",stage="features"}' in metrics
    assert (
        f'bottega_model_info{{alias="champion",name="{NAME}",version="{served.champion}"}} 1.0'
        in metrics
    )
    assert "bottega_predictions_total{" in metrics
    # BentoML's own metrics sit beside ours.
    assert "bentoml_service_request_total" in metrics
    status = served.runner.status(["serving"])[0]
    assert status.state == "healthy" and f"champion v{served.champion}" in status.detail


def test_the_server_reads_what_feast_get_online_features_reads(served: Served) -> None:
    """The server reads each feature view through Feast's provider: the same values, and None
    for an entity the store does not know, as ``get_online_features`` gives."""
    from bottega.usecases.fraud.aggregates import CARD_FEATURES
    from bottega.usecases.fraud.features.definitions import CARD_VIEW, MERCHANT_VIEW
    from bottega.usecases.fraud.training import MERCHANT_FEATURE_COLUMNS
    from services.serving.features import OnlineFeatures

    bodies = sample_requests(served, 20)  # the last one's card and merchant are unknown
    reader = OnlineFeatures.from_settings(served.settings)
    txns = [Transaction(**b) for b in bodies]
    got = reader.read(txns)
    refs = [f"{CARD_VIEW}:{n}" for n in CARD_FEATURES] + [
        f"{MERCHANT_VIEW}:{n}" for n in MERCHANT_FEATURE_COLUMNS
    ]
    feast = FraudFeatureStore(served.settings).store.get_online_features(
        features=refs,
        entity_rows=[{"card_id": t.card_id, "merchant_id": t.merchant_id} for t in txns],
    )
    expected = feast.to_dict()
    for i, rows in enumerate(got):
        card = {n: expected[n][i] for n in CARD_FEATURES}
        merchant = {n: expected[n][i] for n in MERCHANT_FEATURE_COLUMNS}
        assert rows.card == (card if any(v is not None for v in card.values()) else None)
        assert rows.merchant == (
            merchant if any(v is not None for v in merchant.values()) else None
        )
    assert got[-1].missing == ["card", "merchant"]
    assert sum(not rows.missing for rows in got) >= 10


def test_scores_logs_and_training_set_agree_on_every_feature(served: Served) -> None:
    bodies = sample_requests(served, 12)
    with served.client() as client:
        answers = [post(client, body) for body in bodies]
    ids = {body["event_id"] for body in bodies}
    assert [a["event_id"] for a in answers] == [b["event_id"] for b in bodies]
    assert all(a["model_version"] == served.champion for a in answers)
    assert answers[-1]["missing"] == ["card", "merchant"]
    assert any(not a["missing"] for a in answers[:-1])
    for answer in answers:
        latency = answer["latency"]
        assert 0 < latency["features_ms"] <= latency["total_ms"]
        assert 0 < latency["model_ms"] <= latency["total_ms"]

    # 1. The prediction log carries the exact inputs of each score.
    logged = read_predictions(served, ids)
    assert set(logged) == ids
    for answer in answers:
        event = logged[answer["event_id"]]
        assert event.score == pytest.approx(answer["score"], abs=1e-12)
        assert event.model_version == served.champion
        assert set(event.features) == set(MODEL_FEATURES)

    # 2. The registered model, loaded offline, gives the same scores on those values.
    mlflow.set_tracking_uri(served.settings.mlflow_tracking_uri)
    offline = mlflow.pyfunc.load_model(f"models:/{NAME}/{served.champion}")
    frame = pd.DataFrame(
        [logged[a["event_id"]].features for a in answers], columns=list(MODEL_FEATURES)
    )
    # The model computes in float32, and a batch of 13 takes other kernels than a batch of 1:
    # equal up to float32 rounding.
    for answer, score in zip(answers, offline.predict(frame), strict=True):
        assert float(score) == pytest.approx(answer["score"], rel=1e-6, abs=1e-9)

    # 3. Once the ingest has the transactions, training sees the very same feature values.
    with Producer(served.settings.kafka, client_id="test-serving") as producer:
        for body in bodies:
            producer.publish(Transaction(**body))
        producer.flush(timeout=30)
    fs = FraudFeatureStore(served.settings)
    quoted = ", ".join(f"'{i}'" for i in ids)

    def ingested() -> bool:
        got = fs.transactions.query(
            f"SELECT count(DISTINCT event_id) AS n FROM t WHERE event_id IN ({quoted})"
        )
        return bool(got["n"][0].as_py() == len(ids))

    wait_for(ingested, timeout_s=90, what="the ingest to write the scored transactions")
    times = [datetime.fromisoformat(b["event_time"]) for b in bodies]
    frame = training_set(
        min(times) - timedelta(seconds=1),
        max(times) + timedelta(seconds=1),
        store=fs,
        labelled_only=False,
    )
    rows = {str(r["event_id"]): r for r in frame.to_dict("records") if str(r["event_id"]) in ids}
    assert set(rows) == ids
    skewed = {i: same_features(logged[i].features, rows[i]) for i in ids}
    assert all(not names for names in skewed.values()), skewed


BASE = {
    "card_id": "c-1",
    "merchant_id": "m-1",
    "amount": 12.5,
    "currency": "EUR",
    "merchant_category": "grocery",
    "country": "FR",
    "card_country": "FR",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"card_id": None}, "card_id"),
        ({"amount": "twelve"}, "amount"),
        ({"amount": -3}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": 1e999}, "amount"),
        ({"currency": "XYZ"}, "currency"),
        ({"country": "france"}, "country"),
        ({"channel": "carrier-pigeon"}, "channel"),
        ({"event_time": "2025-01-01T00:00:00"}, "event_time"),
        ({"event_time": "0001-01-01T00:00:00+14:00"}, "event_time"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_fields_are_422_naming_the_field(
    served: Served, change: dict[str, Any], field: str
) -> None:
    body = {**BASE, **change}
    body = {k: v for k, v in body.items() if v is not None}
    with served.client() as client:
        response = client.post(
            "/predict", content=json.dumps(body), headers={"content-type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert field in [f["field"] for f in response.json()["fields"]]


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (json.dumps(BASE).replace("12.5", "NaN"), 422, "amount"),
        (json.dumps(BASE).replace("12.5", "Infinity"), 422, "amount"),
        ('{"card_id": "c-1", "amount": ', 422, "body"),
        ("[1, 2, 3]", 422, "body"),
        ("", 422, "body"),
        (json.dumps({**BASE, "card_id": "x" * 100_000}), 413, "body"),
    ],
)
def test_malformed_nan_and_oversized_bodies_are_4xx(
    served: Served, raw: str, status: int, field: str
) -> None:
    with served.client() as client:
        response = client.post(
            "/predict", content=raw.encode(), headers={"content-type": "application/json"}
        )
    assert response.status_code == status, response.text
    assert field in [f["field"] for f in response.json()["fields"]]


def test_a_batch_is_scored_in_order_and_bounded(served: Served) -> None:
    bodies = sample_requests(served, 5)
    with served.client() as client:
        one_by_one = [post(client, body)["score"] for body in bodies]
        batch = client.post("/predict_batch", json={"transactions": bodies})
        empty = client.post("/predict_batch", json={"transactions": []})
        over = client.post("/predict_batch", json={"transactions": [BASE] * 300})
    assert batch.status_code == 200, batch.text
    scores = [p["score"] for p in batch.json()["predictions"]]
    assert scores == pytest.approx(one_by_one, rel=1e-6)  # float32: batch kernels differ
    assert empty.status_code == 422 and over.status_code == 422
    assert over.json()["fields"][0]["field"] == "transactions"


def wait_for_workers(served: Served, check: Any, what: str, timeout_s: float = 60) -> None:
    """Until ``check(report)`` holds on 12 reads in a row: both workers have caught up."""
    streak = 0

    def settled() -> bool:
        nonlocal streak
        streak = streak + 1 if check(served.model()) else 0
        return streak >= 12

    wait_for(settled, timeout_s=timeout_s, what=what)


def register_exploding_model(served: Served) -> str:
    mlflow.set_tracking_uri(served.settings.mlflow_tracking_uri)
    mlflow.set_experiment("serving-tests")
    cloudpickle.register_pickle_by_value(exploding_model)
    try:
        with mlflow.start_run(run_name="exploding-challenger"):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=exploding_model.ExplodingModel(), pip_requirements=[]
            )
        return str(mlflow.register_model(info.model_uri, NAME).version)
    finally:
        cloudpickle.unregister_pickle_by_value(exploding_model)


def test_a_failing_shadow_leaves_the_champion_untouched(served: Served) -> None:
    bodies = sample_requests(served, 30)
    with served.client() as client:
        baseline = [post(client, body) for body in bodies]
    exploding = register_exploding_model(served)
    served.move_alias(CHALLENGER, exploding)
    try:
        wait_for_workers(
            served,
            lambda r: (r["challenger"] or {}).get("version") == exploding,
            "both workers to load the exploding challenger",
        )
        answers = []
        with served.client() as client:
            for body in bodies:
                started = time.perf_counter()
                answers.append(post(client, body))
                # The challenger sleeps 0.3 s before raising: on the request path, no answer
                # could come back this fast.
                assert time.perf_counter() - started < exploding_model.DELAY_S
        assert [a["score"] for a in answers] == [b["score"] for b in baseline]
        assert all(a["model_version"] == served.champion for a in answers)
        before = statistics.median(a["latency"]["total_ms"] for a in baseline)
        after = statistics.median(a["latency"]["total_ms"] for a in answers)
        assert after <= 2 * before + 10, (before, after)

        def failures_counted() -> bool:
            with served.client() as client:
                text = client.get("/metrics").text
            return 'bottega_shadow_predictions_total{outcome="failed"}' in text

        wait_for(failures_counted, timeout_s=60, what="the shadow failures to be counted")
    finally:
        served.registry.delete_alias(NAME, CHALLENGER)
    wait_for_workers(served, lambda r: r["challenger"] is None, "the shadow to be dropped")


def test_a_promotion_under_load_fails_no_request_and_a_rollback_follows(served: Served) -> None:
    newer = served.train("--model", "rules")
    bodies = sample_requests(served, 40)
    seen: Counter[str] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def hammer(offset: int) -> None:
        with served.client(timeout_s=30) as client:
            i = offset
            while not stop.is_set():
                try:
                    response = client.post("/predict", json=bodies[i % len(bodies)])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                else:
                    if response.status_code == 200:
                        seen[response.json()["model_version"]] += 1
                    else:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                i += 1

    threads = [threading.Thread(target=hammer, args=(k * 10,)) for k in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: seen[served.champion] >= 50, timeout_s=60, what="the old champion")
        served.move_alias(CHAMPION, newer, previous=served.champion)
        served.registry.set_tags(NAME, newer, {TAG_PREVIOUS_CHAMPION: served.champion})
        wait_for(lambda: seen[newer] >= 200, timeout_s=60, what="the new champion to answer")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert seen[served.champion] > 0 and seen[newer] > 0

    rolled = subprocess.run(
        [sys.executable, "-c", "from bottega.cli import main; main()", "rollback"],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rolled.returncode == 0, rolled.stderr[-2000:]
    started = time.monotonic()
    wait_for_workers(
        served,
        lambda r: r["champion"]["version"] == served.champion,
        "the rollback to reach both workers",
        timeout_s=30,
    )
    assert time.monotonic() - started < 30


def test_mlflow_down_at_start_serves_the_cached_champion_degraded(served: Served) -> None:
    dead_mlflow, port = free_ports(2)
    settings = served.settings.model_copy(
        update={
            "mlflow": served.settings.mlflow.model_copy(update={"port": dead_mlflow}),
            "serving": served.settings.serving.model_copy(update={"port": port}),
        }
    )
    spec = serving_service(settings)
    cached = LocalStack(
        [replace(spec, name="serving-cached", depends_on=(), prepare=None)],
        home=settings.home,
        bind_host=settings.bind_host,
        cwd=settings.project_root,
    )
    try:
        cached.up()
        with httpx.Client(base_url=settings.serving.url, timeout=10) as client:
            assert client.get("/readyz").status_code == 200
            report = client.get("/model").json()
            answer = post(client, sample_requests(served, 1)[0])
        assert report["state"] == "degraded"
        assert report["registry_reachable"] is False
        assert report["champion"]["source"] == "cache"
        assert report["champion"]["version"] == served.champion
        assert answer["model_version"] == served.champion
    finally:
        cached.down()
