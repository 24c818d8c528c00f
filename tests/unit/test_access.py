"""Access, as declared: every service of the local stack binds 127.0.0.1 by default, and the
trainer's token stays out of reprs, dumps, logs and answers.

The integration test ``test_access`` checks the same against the running processes' sockets.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from bottega.auth import ensure_trainer_token, load_trainer_token, token_file
from bottega.log import JsonFormatter
from bottega.settings import DEFAULT_HOST, BottegaSettings, Endpoint
from bottega.stack.services import local_services
from bottega.stack.settings import StackSettings
from bottega.stack.spec import Prerequisite, ServiceSpec
from services.serving.__main__ import serve_command
from services.serving.settings import ServingSettings
from services.trainer.api import build_app
from services.trainer.history import RunHistory
from services.trainer.metrics import TrainerMetrics
from services.trainer.retrainer import Retrainer, RetrainPolicy
from services.trainer.settings import TrainerSettings
from tests.unit.services.test_retrainer import FakeJobs

LOOPBACK = "127.0.0.1"
TOKEN = "tok-3f9a1c0b7e2d4a6b8c9d0e1f2a3b4c5d"


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BOTTEGA_* variable of the developer's shell reaches the settings."""
    for name in list(os.environ):
        if name.startswith("BOTTEGA_"):
            monkeypatch.delenv(name)


def stack_settings(root: Path, home: Path) -> StackSettings:
    return StackSettings(_env_file=None, project_root=root, home=home)  # type: ignore[call-arg]


def test_every_default_host_is_the_loopback(clean_env: None, tmp_path: Path) -> None:
    assert DEFAULT_HOST == LOOPBACK
    settings = BottegaSettings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    assert settings.bind_host == LOOPBACK
    endpoints = {
        name: getattr(settings, name)
        for name in BottegaSettings.model_fields
        if isinstance(getattr(settings, name), Endpoint)
    }
    assert set(endpoints) == {
        "kafka",
        "mlflow",
        "prometheus",
        "alertmanager",
        "grafana",
        "serving",
        "trainer",
        "monitor",
        "ingest",
    }
    assert {name: e.host for name, e in endpoints.items()} == dict.fromkeys(endpoints, LOOPBACK)
    for cls in (TrainerSettings, ServingSettings):
        assert cls(_env_file=None, home=tmp_path).bind_host == LOOPBACK  # type: ignore[call-arg]


def commands(
    monkeypatch: pytest.MonkeyPatch, settings: StackSettings
) -> dict[str, tuple[list[str], ServiceSpec]]:
    # The command lines name each binary by where it is found; the names are enough here.
    monkeypatch.setattr(Prerequisite, "require", lambda self: self.name)
    return {spec.name: (spec.command(), spec) for spec in local_services(settings)}


def test_every_local_service_binds_the_loopback(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, project_root: Path, tmp_path: Path
) -> None:
    settings = stack_settings(project_root, tmp_path)
    declared = commands(monkeypatch, settings)
    assert set(declared) == {
        "kafka",
        "mlflow",
        "alertmanager",
        "prometheus",
        "ingest",
        "monitor",
        "trainer",
        "serving",
    }
    for name, (command, spec) in declared.items():
        assert not any("0.0.0.0" in arg or "[::]" in arg for arg in command), (name, command)
        if spec.env is not None and "BOTTEGA_BIND_HOST" in spec.env:
            assert spec.env["BOTTEGA_BIND_HOST"] == LOOPBACK, name

    mlflow = declared["mlflow"][0]
    assert mlflow[mlflow.index("--host") + 1] == LOOPBACK
    for name in ("alertmanager", "prometheus"):
        command = declared[name][0]
        port = declared[name][1].ports[0].port
        assert f"--web.listen-address={LOOPBACK}:{port}" in command
    # Alertmanager's gossip would bind 0.0.0.0:9094 unless it is switched off.
    assert "--cluster.listen-address=" in declared["alertmanager"][0]
    # Our own processes read the bind address from the environment the runner gives them.
    for name in ("ingest", "monitor", "trainer", "serving"):
        env = declared[name][1].env
        assert env is not None and env["BOTTEGA_BIND_HOST"] == LOOPBACK, name
    serving = serve_command(ServingSettings(_env_file=None, home=tmp_path))  # type: ignore[call-arg]
    assert serving[serving.index("--host") + 1] == LOOPBACK


def test_the_broker_listens_on_the_bind_address_only(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, project_root: Path, tmp_path: Path
) -> None:
    settings = stack_settings(project_root, tmp_path)
    kafka = next(s for s in local_services(settings) if s.name == "kafka")
    # The storage is formatted once; pretend it was, so prepare only renders the config.
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("")
    assert kafka.prepare is not None
    kafka.prepare()
    properties = (tmp_path / "kafka" / "server.properties").read_text().splitlines()
    listeners = next(line for line in properties if line.startswith("listeners="))
    assert listeners == (
        f"listeners=PLAINTEXT://{LOOPBACK}:{settings.kafka.port},"
        f"CONTROLLER://{LOOPBACK}:{settings.kafka.controller_port}"
    )


def test_the_token_is_in_no_repr_or_dump(clean_env: None, tmp_path: Path) -> None:
    settings = TrainerSettings(  # type: ignore[call-arg]
        _env_file=None, home=tmp_path, trainer={"token": TOKEN}
    )
    assert settings.trainer.token is not None
    assert settings.trainer.token.get_secret_value() == TOKEN
    for shown in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        json.dumps(settings.model_dump(mode="json")),
        repr(settings.trainer),
    ):
        assert TOKEN not in shown
    # A child process needs it, and gets it through its environment only.
    assert settings.to_env()["BOTTEGA_TRAINER__TOKEN"] == TOKEN


def test_the_generated_token_file_is_owner_only(clean_env: None, tmp_path: Path) -> None:
    settings = BottegaSettings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    path = ensure_trainer_token(settings)
    assert path == token_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    generated = load_trainer_token(settings).get_secret_value()
    assert len(generated) >= 32
    # A second start keeps the token that Alertmanager already reads.
    ensure_trainer_token(settings)
    assert load_trainer_token(settings).get_secret_value() == generated


def test_no_log_record_or_answer_carries_a_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    metrics = TrainerMetrics(registry)
    history = RunHistory(tmp_path / "runs.jsonl")
    retrainer = Retrainer(FakeJobs(["ok"]), history, RetrainPolicy(cooldown_s=0), metrics)
    http = TestClient(build_app(retrainer, history, SecretStr(TOKEN), registry, metrics))
    near_miss = TOKEN[:-1] + "x"
    answers = []
    with caplog.at_level(logging.DEBUG):
        for header in (f"Bearer {near_miss}", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}"):
            for path in ("/webhook", "/retrain"):
                answers.append(
                    http.post(path, content=b"{", headers={"Authorization": header}).text
                )
        accepted = http.post(
            "/retrain", json={"reason": "test"}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert accepted.status_code == 202
        retrainer.step()
    assert caplog.records, "the run logs something, which must not hold the token"
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    for secret in (TOKEN, near_miss):
        assert secret not in logged
        assert not any(secret in answer for answer in answers)
