"""The trainer as a real process against the real MLflow server, Kafka broker and feature store:
the bearer token, a retraining run from an Alertmanager notification, deduplication, and a
failing run that is retried, recorded as failed and leaves the champion alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bottega.registry import CHAMPION, MODEL_NAMES, MlflowRegistry

from .conftest import Bootstrapped, free_ports, service_env, service_process, wait_for

NAME = MODEL_NAMES["fraud"]
TOKEN = "integration-token-0123456789abcdef"


def notification(*names: str) -> dict[str, Any]:
    """An Alertmanager v4 webhook body, as Alertmanager sends it."""
    return {
        "receiver": "trainer",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": n, "retrain": "true", "severity": "warning"},
                "annotations": {"summary": n},
                "startsAt": "2025-03-03T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": f"{abs(hash(n)):016x}",
            }
            for n in names
        ],
        "groupLabels": {"retrain": "true"},
        "commonLabels": {"retrain": "true"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}/{retrain="true"}:{retrain="true"}',
        "truncatedAlerts": 0,
    }


def trainer(
    bootstrapped: Bootstrapped, project_root: Path, name: str, **options: str
) -> Iterator[str]:
    (port,) = free_ports(1)
    env = service_env(
        bootstrapped.settings,
        project_root,
        BOTTEGA_TRAINER__PORT=str(port),
        BOTTEGA_TRAINER__TOKEN=TOKEN,
        BOTTEGA_RETRAIN__HISTORY_FILE=str(bootstrapped.home / "trainer" / f"{name}.jsonl"),
        **{f"BOTTEGA_RETRAIN__{k.upper()}": v for k, v in options.items()},
    )
    url = f"http://127.0.0.1:{port}"
    log = bootstrapped.home / "logs" / f"trainer-{name}.log"
    with service_process("services.trainer", env, url, log):
        yield url


@pytest.fixture()
def good_trainer(bootstrapped: Bootstrapped, project_root: Path) -> Iterator[str]:
    yield from trainer(bootstrapped, project_root, "good", window="2d", epochs="3", cooldown_s="0")


@pytest.fixture()
def failing_trainer(bootstrapped: Bootstrapped, project_root: Path) -> Iterator[str]:
    # A one-second window holds no labelled transactions: training fails every time.
    yield from trainer(
        bootstrapped,
        project_root,
        "failing",
        window="1s",
        max_attempts="2",
        backoff_initial_s="0.5",
        cooldown_s="0",
    )


def runs(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/runs", timeout=5)
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()
    return data


def finished(url: str) -> dict[str, Any] | None:
    found = runs(url)
    return found[0] if found and found[0]["status"] in {"succeeded", "failed"} else None


def registry(bootstrapped: Bootstrapped) -> MlflowRegistry:
    return MlflowRegistry(bootstrapped.settings.mlflow_tracking_uri)


def test_a_webhook_without_the_right_token_gets_401_and_trains_nothing(
    good_trainer: str, bootstrapped: Bootstrapped
) -> None:
    versions = [v.version for v in registry(bootstrapped).versions(NAME)]
    body = notification("FeatureDriftDetected")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = httpx.post(f"{good_trainer}/webhook", json=body, headers=headers, timeout=10)
        assert answer.status_code == 401, answer.text
    assert httpx.post(f"{good_trainer}/retrain", timeout=10).status_code == 401
    assert runs(good_trainer) == []
    metrics = httpx.get(f"{good_trainer}/metrics", timeout=5).text
    assert 'bottega_trainer_requests_total{outcome="unauthorized",source="alert"} 3.0' in metrics
    assert "bottega_trainer_running 0.0" in metrics
    assert [v.version for v in registry(bootstrapped).versions(NAME)] == versions


def test_an_alert_retrains_and_promotes_once_and_a_second_is_deduplicated(
    good_trainer: str, bootstrapped: Bootstrapped
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = {v.version for v in registry(bootstrapped).versions(NAME)}
    first = httpx.post(
        f"{good_trainer}/webhook",
        json=notification("FeatureDriftDetected", "PredictionDriftDetected"),
        headers=auth,
        timeout=10,
    )
    assert first.status_code == 202, first.text
    second = httpx.post(
        f"{good_trainer}/webhook",
        json=notification("ModelQualityDegraded"),
        headers=auth,
        timeout=10,
    )
    assert second.status_code == 200 and second.json()["outcome"] == "deduplicated"
    assert second.json()["run"] == first.json()["run"]

    run = wait_for(lambda: finished(good_trainer), timeout_s=480, what="the run to finish")
    assert isinstance(run, dict)
    assert run["status"] == "succeeded", run
    assert run["alerts"] == ["FeatureDriftDetected", "PredictionDriftDetected"]
    assert run["deduplicated"] == 1
    assert run["decision"] in {"promoted", "rejected"}
    assert run["promotion"]["version"] == run["version"]
    assert run["train"]["window_end"] > run["train"]["window_start"]
    assert len(runs(good_trainer)) == 1

    after = registry(bootstrapped).versions(NAME)
    assert {v.version for v in after} - before == {run["version"]}
    champion = registry(bootstrapped).by_alias(NAME, CHAMPION)
    assert champion is not None
    if run["decision"] == "promoted":
        assert champion.version == run["version"]
    else:
        assert champion.version != run["version"]
    metrics = httpx.get(f"{good_trainer}/metrics", timeout=5).text
    assert f'bottega_trainer_runs_total{{outcome="{run["decision"]}"}} 1.0' in metrics
    assert "bottega_trainer_last_run_duration_seconds" in metrics


def test_a_failing_run_is_retried_recorded_failed_and_leaves_the_champion(
    failing_trainer: str, bootstrapped: Bootstrapped
) -> None:
    champion = registry(bootstrapped).by_alias(NAME, CHAMPION)
    versions = [v.version for v in registry(bootstrapped).versions(NAME)]
    answer = httpx.post(
        f"{failing_trainer}/retrain",
        json={"reason": "a window with no data"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    run = wait_for(lambda: finished(failing_trainer), timeout_s=300, what="the run to fail")
    assert isinstance(run, dict)
    assert run["status"] == "failed"
    assert len(run["attempts"]) == 2
    assert all("labelled transactions" in a["error"] for a in run["attempts"]), run["attempts"]
    assert run["version"] is None and run["decision"] is None
    after = registry(bootstrapped).by_alias(NAME, CHAMPION)
    assert champion is not None and after is not None and after.version == champion.version
    assert [v.version for v in registry(bootstrapped).versions(NAME)] == versions
    metrics = httpx.get(f"{failing_trainer}/metrics", timeout=5).text
    assert 'bottega_trainer_runs_total{outcome="failed"} 1.0' in metrics
    assert "bottega_trainer_failed_attempts_total 2.0" in metrics
