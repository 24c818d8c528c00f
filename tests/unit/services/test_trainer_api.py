"""The trainer's HTTP API: the bearer token, Alertmanager's payload, the run history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bottega.auth import bearer_matches
from services.trainer.api import build_app
from services.trainer.history import RunHistory
from services.trainer.metrics import TrainerMetrics
from services.trainer.retrainer import Retrainer, RetrainPolicy

from .test_retrainer import FakeJobs

TOKEN = "s3cret-token"


def notification(*alerts: tuple[str, str, str]) -> dict[str, Any]:
    """An Alertmanager v4 webhook body with (name, status, retrain) alerts."""
    return {
        "version": "4",
        "groupKey": '{}/{retrain="true"}:{}',
        "status": "firing",
        "receiver": "trainer",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": name, "retrain": retrain, "severity": "warning"},
                "annotations": {"summary": name},
                "startsAt": "2025-03-03T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus",
                "fingerprint": name,
            }
            for name, status, retrain in alerts
        ],
    }


def client(
    tmp_path: Path, jobs: FakeJobs, **options: int
) -> tuple[TestClient, Retrainer, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = TrainerMetrics(registry)
    history = RunHistory(tmp_path / "runs.jsonl")
    retrainer = Retrainer(jobs, history, RetrainPolicy(cooldown_s=0), metrics)
    app = build_app(retrainer, history, SecretStr(TOKEN), registry, metrics, **options)
    return TestClient(app), retrainer, registry


def test_bearer_matching() -> None:
    token = SecretStr(TOKEN)
    assert bearer_matches(f"Bearer {TOKEN}", token)
    assert bearer_matches(f"bearer {TOKEN}", token)
    assert not bearer_matches(None, token)
    assert not bearer_matches(TOKEN, token)
    assert not bearer_matches(f"Basic {TOKEN}", token)
    assert not bearer_matches(f"Bearer {TOKEN}x", token)
    assert not bearer_matches("Bearer ", token)


def test_a_webhook_without_the_token_is_refused_and_trains_nothing(tmp_path: Path) -> None:
    jobs = FakeJobs(["ok"])
    http, retrainer, registry = client(tmp_path, jobs)
    body = notification(("FeatureDriftDetected", "firing", "true"))
    assert http.post("/webhook", json=body).status_code == 401
    wrong = http.post("/webhook", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert retrainer.active is None and retrainer.step() is None and jobs.trained == 0
    assert http.get("/runs").json() == []
    assert (
        registry.get_sample_value(
            "bottega_trainer_requests_total", {"source": "alert", "outcome": "unauthorized"}
        )
        == 2
    )


def test_a_firing_retrain_alert_starts_one_run_and_a_second_is_deduplicated(
    tmp_path: Path,
) -> None:
    jobs = FakeJobs(["ok"])
    http, retrainer, _ = client(tmp_path, jobs)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = notification(
        ("FeatureDriftDetected", "firing", "true"), ("PredictionDriftDetected", "firing", "true")
    )
    first = http.post("/webhook", json=body, headers=auth)
    assert first.status_code == 202 and first.json()["outcome"] == "accepted"
    second = http.post("/webhook", json=body, headers=auth)
    assert second.status_code == 200 and second.json()["outcome"] == "deduplicated"
    retrainer.step()
    runs = http.get("/runs").json()
    assert len(runs) == 1
    assert runs[0]["alerts"] == ["FeatureDriftDetected", "PredictionDriftDetected"]
    assert runs[0]["decision"] == "promoted" and runs[0]["version"] == "1"
    assert http.get(f"/runs/{runs[0]['id']}").json()["status"] == "succeeded"


def test_resolved_or_non_retrain_alerts_are_ignored(tmp_path: Path) -> None:
    jobs = FakeJobs([])
    http, retrainer, _ = client(tmp_path, jobs)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = notification(
        ("FeatureDriftDetected", "resolved", "true"), ("PredictionLatencyHigh", "firing", "false")
    )
    answer = http.post("/webhook", json=body, headers=auth)
    assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"
    assert retrainer.active is None


def test_manual_retrain_needs_the_token_and_refuses_while_busy(tmp_path: Path) -> None:
    jobs = FakeJobs(["ok"])
    http, _, _ = client(tmp_path, jobs)
    assert http.post("/retrain").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http.post("/retrain", json={"reason": "demo"}, headers=auth).status_code == 202
    busy = http.post("/retrain", headers=auth)
    assert busy.status_code == 409 and busy.json()["outcome"] == "deduplicated"
    assert http.get("/runs").json()[0]["reason"] == "demo"


def test_metrics_and_health(tmp_path: Path) -> None:
    http, _, _ = client(tmp_path, FakeJobs([]))
    assert http.get("/readyz").status_code == 200
    assert "bottega_trainer_running" in http.get("/metrics").text


def test_the_token_is_checked_before_the_body_is_read(tmp_path: Path) -> None:
    jobs = FakeJobs(["ok"])
    http, retrainer, registry = client(tmp_path, jobs)
    json_type = {"content-type": "application/json"}
    for path in ("/webhook", "/retrain"):
        # Malformed, oversize or of the wrong type: without the token, the answer is 401 all
        # the same, so a caller without it learns nothing about what the body should be.
        for body, headers in (
            (b"{not json", json_type),
            (b"x" * 5_000_000, json_type),
            (b"\xff\xfe", {"content-type": "text/plain"}),
        ):
            answer = http.post(path, content=body, headers=headers)
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json() == {"detail": "a valid bearer token is required"}
    # Every method that may change state is guarded, on any path.
    assert http.post("/runs").status_code == 401
    assert http.put("/retrain").status_code == 401
    assert http.delete("/runs/x").status_code == 401
    assert http.get("/runs").status_code == 200
    assert retrainer.active is None and jobs.trained == 0
    assert (
        registry.get_sample_value(
            "bottega_trainer_requests_total", {"source": "manual", "outcome": "unauthorized"}
        )
        == 4
    )


def test_with_the_token_bad_bodies_are_4xx(tmp_path: Path) -> None:
    jobs = FakeJobs(["ok"])
    http, retrainer, _ = client(tmp_path, jobs, max_body_bytes=4096)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    json_type = {**auth, "content-type": "application/json"}
    for path in ("/webhook", "/retrain"):
        too_big = http.post(path, content=b"[" * 5000, headers=json_type)
        assert too_big.status_code == 413, too_big.text
        assert "over the limit of 4096 bytes" in too_big.json()["error"]
        for body, headers in (
            (b"{not json", json_type),
            (b"\xff\xfe", json_type),
            (b"[1, 2]", json_type),
            (b'"a string"', json_type),
            (b'{"reason": "x"}', {**auth, "content-type": "text/plain"}),
        ):
            answer = http.post(path, content=body, headers=headers)
            assert answer.status_code == 422, (path, body, answer.text)
    assert http.post("/webhook", json={"alerts": "none"}, headers=auth).status_code == 422
    assert retrainer.active is None and jobs.trained == 0
