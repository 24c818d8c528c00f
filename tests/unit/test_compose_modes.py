"""One stack, two declarations: Docker mode's compose file and local mode's service specs agree
on services, commands, ports, settings names, alert rules and scrape targets; and the comparison
fails when one mode gains a service the other lacks."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bottega.settings import BottegaSettings
from bottega.stack import modes
from bottega.stack.monitoring_config import SCRAPED_SERVICES, render_prometheus_config
from bottega.stack.services import local_services
from bottega.stack.settings import StackOptions, StackSettings
from bottega.stack.spec import ServiceSpec
from services.ingest.settings import IngestSettings
from services.monitor.settings import MonitorSettings
from services.serving.settings import ServingSettings
from services.trainer.settings import TrainerSettings
from tests.docker_mode import INFRA, ROOT, raw_compose, services

# The settings class each of Bottega's processes reads.
SETTINGS_CLASSES: dict[str, type[BottegaSettings]] = {
    "ingest": IngestSettings,
    "serving": ServingSettings,
    "monitor": MonitorSettings,
    "trainer": TrainerSettings,
    "mlflow": StackSettings,
}


@pytest.fixture()
def specs(tmp_path: Path) -> list[ServiceSpec]:
    """Local mode's specs on default settings; any executable stands in for the binaries."""
    settings = StackSettings(  # type: ignore[call-arg]
        _env_file=None,
        project_root=ROOT,
        home=tmp_path,
        stack=StackOptions(
            prometheus_bin=sys.executable, alertmanager_bins=(sys.executable,), java=sys.executable
        ),
    )
    return local_services(settings)


def test_both_modes_run_the_same_services(specs: list[ServiceSpec]) -> None:
    assert modes.compare_services(services(), [s.name for s in specs]) == []


def test_a_service_that_only_compose_gains_fails_the_comparison(specs: list[ServiceSpec]) -> None:
    extra = {**services(), "feature-server": {"image": "x:1", "healthcheck": {}}}
    problems = modes.compare_services(extra, [s.name for s in specs])
    assert problems == ["compose runs 'feature-server', which local mode lacks"]


def test_a_service_that_only_local_mode_gains_fails_the_comparison(
    specs: list[ServiceSpec],
) -> None:
    names = [s.name for s in specs] + ["scheduler"]
    assert modes.compare_services(services(), names) == [
        "local mode runs 'scheduler', which compose lacks"
    ]


def test_a_job_that_became_a_service_fails_the_comparison(specs: list[ServiceSpec]) -> None:
    changed = services()
    changed["bootstrap"] = {**changed["bootstrap"], "restart": "unless-stopped"}
    problems = modes.compare_services(changed, [s.name for s in specs])
    assert problems == ["bootstrap is a one-shot job, but compose restarts or checks it"]


def test_both_modes_run_the_same_commands(specs: list[ServiceSpec]) -> None:
    assert modes.compare_commands(services(), specs) == []
    serving = next(s for s in specs if s.name == "serving")
    assert modes._argv(serving.command()) == ["python", "-m", "services.serving"]


def test_a_changed_command_fails_the_comparison(specs: list[ServiceSpec]) -> None:
    changed = services()
    changed["ingest"] = {**changed["ingest"], "command": ["python", "-m", "services.ingest2"]}
    changed["prometheus"] = {**changed["prometheus"], "command": ["--config.file=x"]}
    problems = modes.compare_commands(changed, specs)
    assert len(problems) == 2
    assert problems[0].startswith("prometheus") or problems[1].startswith("prometheus")


def test_both_modes_listen_on_the_same_ports(specs: list[ServiceSpec]) -> None:
    assert modes.compare_ports(services(), specs) == []
    moved = [replace(s, ports=()) if s.name == "monitor" else s for s in specs]
    assert modes.compare_ports(services(), moved) == [
        "monitor: compose listens on [8082], local mode on []"
    ]


def test_published_ports_come_from_the_same_port_settings(tmp_path: Path) -> None:
    settings = BottegaSettings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    raw = raw_compose()["services"]
    assert modes.compare_published_ports(raw, settings) == []
    wrong = {"monitor": {"ports": ["0.0.0.0:${BOTTEGA_MONITOR__PORT:-8082}:8082"]}}
    wrong["serving"] = {"ports": ["127.0.0.1:${SERVING_PORT:-3000}:3000"]}
    assert len(modes.compare_published_ports(wrong, settings)) == 2


def test_compose_sets_only_settings_that_exist() -> None:
    assert modes.compare_settings_names(services(), SETTINGS_CLASSES) == []
    typo = services()
    typo["ingest"] = {**typo["ingest"], "environment": {"BOTTEGA_KAFKA__HOTS": "kafka"}}
    assert modes.compare_settings_names(typo, SETTINGS_CLASSES) == [
        "ingest: BOTTEGA_KAFKA__HOTS is not a setting of IngestSettings"
    ]


def test_the_broker_in_docker_fills_local_modes_config() -> None:
    template = (INFRA / "kafka" / "server.properties").read_text()
    script = (INFRA / "kafka" / "docker-start.sh").read_text()
    assert modes.compare_kafka_start(template, script) == []
    drifted = template + "\nlog.retention.hours=${retention_hours}\n"
    assert modes.compare_kafka_start(drifted, script) == [
        "the start script fills ['bind_host', 'controller_port', 'data_dir', 'host', 'partitions', "
        "'port'], the template has ['bind_host', 'controller_port', 'data_dir', 'host', "
        "'partitions', 'port', 'retention_hours']"
    ]
    # The settings it fills them from are the broker's settings, with compose's hostname.
    kafka = services()["kafka"]["environment"]
    assert kafka["BOTTEGA_KAFKA__HOST"] == "kafka" and kafka["BOTTEGA_BIND_HOST"] == "0.0.0.0"


@pytest.fixture()
def compose_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("BOTTEGA_"):
            monkeypatch.delenv(name)
    yield


@pytest.mark.parametrize("name", ["ingest", "serving", "monitor", "trainer"])
@pytest.mark.usefixtures("compose_environment")
def test_each_service_reads_its_peers_hosts_and_its_own_port_from_compose(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = services()[name]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = SETTINGS_CLASSES[name](_env_file=None)  # type: ignore[call-arg]
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.bind_host == "0.0.0.0"
    assert str(settings.home) == "/var/lib/bottega"
    assert "bottega-state:/var/lib/bottega" in service["volumes"]
    assert settings.feast.online_store == "redis"
    assert settings.feast.redis_connection_string.startswith("redis:6379")
    assert (settings.feast.registry or "").endswith("@postgres:5432/feast")
    own: Any = getattr(settings, name)
    assert own.port in modes.container_ports(service)
    assert f"http://127.0.0.1:{own.port}/readyz" in service["healthcheck"]["test"]


def test_both_modes_evaluate_the_same_alert_rules_and_scrape_the_same_jobs(
    tmp_path: Path,
) -> None:
    committed = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    settings = BottegaSettings(_env_file=None, project_root=ROOT, home=tmp_path)  # type: ignore[call-arg]
    local = render_prometheus_config(settings, tmp_path / "prometheus.yml")
    # Local mode's rule files are the committed ones, made absolute.
    assert local["rule_files"] == [str(ROOT / "monitoring" / p) for p in committed["rule_files"]]
    # Only the targets differ: compose names against local mode's host and port.
    for docker_job, local_job in zip(
        committed["scrape_configs"], local["scrape_configs"], strict=True
    ):
        assert docker_job["job_name"] == local_job["job_name"]
        (docker_target,) = docker_job["static_configs"][0]["targets"]
        (local_target,) = local_job["static_configs"][0]["targets"]
        host, port = docker_target.split(":")
        assert host == docker_job["job_name"]
        assert local_target == f"{settings.bind_host}:{port}"
    assert {job["job_name"] for job in committed["scrape_configs"]} == set(SCRAPED_SERVICES)


def test_prometheus_in_docker_scrapes_compose_service_names() -> None:
    committed = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    assert modes.compare_scrape_targets(committed, services()) == []
    committed["scrape_configs"].append(
        {"job_name": "redis", "static_configs": [{"targets": ["localhost:6379"]}]}
    )
    assert modes.compare_scrape_targets(committed, services()) == [
        "redis: target localhost:6379 is no compose service"
    ]
