"""The closed loop, end to end, unattended, on the real local stack.

``bottega demo`` runs against a private stack on free ports: bootstrap a champion, replay
``baseline`` (the false-alarm check), then ``fraud-ring``. The test then checks each link of the
loop in the component that owns it: Prometheus fired the alert, Alertmanager delivered it and
the trainer ran, the new version was trained on data that includes the drifted phase, it was
promoted and answers ``/predict``, and on the drifted regime it ranks better than the old
champion did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from bottega.registry import CHAMPION, MODEL_NAMES, MlflowRegistry
from bottega.stack.runner import LocalStack
from bottega.stack.services import build_local_stack
from bottega.stack.settings import StackSettings
from tests.integration.conftest import make_stack_settings

# Demo timings: the monitor's windows and the replay's speed (see docs/monitoring.md).
DEMO_ENV = {"BOTTEGA_MONITORING__WINDOW": "6h"}


@pytest.fixture(scope="module")
def loop_stack(
    project_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[StackSettings, dict[str, str]]]:
    settings = make_stack_settings(project_root, tmp_path_factory.mktemp("loop-home"))
    env = {
        **os.environ,
        **settings.to_env(),
        **DEMO_ENV,
        "BOTTEGA_ENV_FILE": str(settings.home / "no.env"),
        "PYTHONPATH": os.pathsep.join([str(project_root / "platform"), str(project_root)]),
        "COLUMNS": "200",
    }
    previous = {k: os.environ.get(k) for k in DEMO_ENV}
    os.environ.update(DEMO_ENV)  # the runner hands its own environment to the services
    stack: LocalStack = build_local_stack(settings)
    try:
        stack.up()
        yield settings, env
    finally:
        stack.down()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def demo(loop_stack: tuple[StackSettings, dict[str, str]]) -> dict[str, Any]:
    settings, env = loop_stack
    out = settings.home / "demo.json"
    done = subprocess.run(
        [sys.executable, "-m", "bottega.cli", "demo", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    result["returncode"] = done.returncode
    result["stdout"] = done.stdout
    return result


def test_a_calm_replay_triggers_no_retraining(demo: dict[str, Any]) -> None:
    assert demo["calm"]["transactions"] > 10_000
    assert demo["calm"]["predict_errors"] == 0
    assert demo["false_alarm_runs"] == []


def test_the_drift_alert_fired_in_prometheus_and_reached_the_trainer(
    demo: dict[str, Any], loop_stack: tuple[StackSettings, dict[str, str]]
) -> None:
    settings, _ = loop_stack
    onset = next(m for m in demo["moments"] if m["what"] == "drift onset")
    fired = [a for a in demo["alerts"] if a["retrain"] and a["wall"] >= onset["wall"]]
    assert fired, demo["alerts"]
    # Prometheus' own record of it, read back now.
    series = httpx.get(
        f"{settings.prometheus.url}/api/v1/query_range",
        params={
            "query": f'ALERTS{{alertname="{fired[0]["name"]}",alertstate="firing"}}',
            "start": onset["wall"],
            "end": datetime.now().timestamp(),
            "step": "5s",
        },
        timeout=10,
    ).json()["data"]["result"]
    assert series
    # Alertmanager delivered it: the trainer's run names the alert that asked for it.
    runs = httpx.get(f"{settings.trainer.url}/runs", timeout=10).json()
    triggered = [r for r in runs if fired[0]["name"] in r["alerts"]]
    assert triggered and triggered[0]["trigger"] == "alert"
    assert triggered[0]["status"] == "succeeded", triggered[0]


def test_the_new_version_was_trained_on_the_drifted_phase(
    demo: dict[str, Any], loop_stack: tuple[StackSettings, dict[str, str]]
) -> None:
    settings, _ = loop_stack
    assert demo["new_version"] is not None, demo["moments"]
    version = MlflowRegistry(settings.mlflow_tracking_uri).get(
        MODEL_NAMES["fraud"], demo["new_version"]
    )
    window = MlflowClient(settings.mlflow_tracking_uri).download_artifacts(
        version.run_id, "training_window.json", str(settings.home)
    )
    trained = json.loads(Path(window).read_text())
    ring = next(p for p in demo["drifting"]["phases"] if p["name"] == "ring")
    assert datetime.fromisoformat(trained["start"]) < datetime.fromisoformat(ring["simulated"])
    assert datetime.fromisoformat(trained["end"]) > datetime.fromisoformat(ring["simulated"])


def test_the_new_version_is_champion_and_answers_predict(
    demo: dict[str, Any], loop_stack: tuple[StackSettings, dict[str, str]]
) -> None:
    settings, _ = loop_stack
    champion = MlflowRegistry(settings.mlflow_tracking_uri).by_alias(MODEL_NAMES["fraud"], CHAMPION)
    assert champion is not None and champion.version == demo["new_version"]
    assert champion.version != demo["champion_before"]
    answer = httpx.post(
        f"{settings.serving.url}/predict",
        json={
            "card_id": "card-e2e",
            "merchant_id": "m-e2e",
            "amount": 42.0,
            "merchant_category": "grocery",
            "country": "DE",
            "card_country": "DE",
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == demo["new_version"]
    assert demo["new_version"] in demo["drifting"]["versions_seen"]


def test_on_the_drifted_regime_the_new_champion_beats_the_old(demo: dict[str, Any]) -> None:
    old = demo["quality"][demo["champion_before"]]
    new = demo["quality"][demo["new_version"]]
    assert new["frauds"] >= 20 and old["frauds"] >= 20, demo["quality"]
    assert new["pr_auc"] > old["pr_auc"], demo["quality"]
    assert demo["returncode"] == 0, demo["stdout"][-3000:]
