"""Prometheus and Alertmanager: their config is valid, and the live stack scrapes our services."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings

from .conftest import wait_for


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which(args[0])
    assert tool, f"{args[0]} is missing: apt-get install -y prometheus prometheus-alertmanager"
    return subprocess.run(
        [tool, *args[1:]], capture_output=True, text=True, check=False, timeout=60
    )


def test_promtool_accepts_the_committed_config(project_root: Path) -> None:
    done = run_tool(
        "promtool", "check", "config", str(project_root / "monitoring" / "prometheus.yml")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rule files found" in done.stdout


def test_promtool_accepts_the_rendered_local_config(
    stack: LocalStack, stack_settings: StackSettings
) -> None:
    rendered = stack_settings.home / "prometheus" / "prometheus.yml"
    done = run_tool("promtool", "check", "config", str(rendered))
    assert done.returncode == 0, done.stdout + done.stderr


def test_amtool_accepts_the_rendered_local_config(
    stack: LocalStack, stack_settings: StackSettings
) -> None:
    rendered = stack_settings.home / "alertmanager" / "alertmanager.yml"
    done = run_tool("amtool", "check-config", str(rendered))
    assert done.returncode == 0, done.stdout + done.stderr
    assert stack_settings.trainer.url in rendered.read_text()


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: up ==\n")
    done = run_tool("promtool", "check", "rules", str(bad))
    assert done.returncode != 0


def test_amtool_accepts_the_alertmanager_config(project_root: Path) -> None:
    done = run_tool("amtool", "check-config", str(project_root / "monitoring" / "alertmanager.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "test_file",
    sorted((Path(__file__).resolve().parents[2] / "monitoring" / "tests").glob("*_test.yml")),
    ids=lambda p: p.name,
)
def test_alert_rule_unit_tests_pass(test_file: Path) -> None:
    done = run_tool("promtool", "test", "rules", str(test_file))
    assert done.returncode == 0, done.stdout + done.stderr


def query(settings: StackSettings, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{settings.prometheus.url}/api/v1/query", params={"query": promql}, timeout=5
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def test_prometheus_scrapes_our_live_services(
    stack: LocalStack, stack_settings: StackSettings
) -> None:
    def all_up() -> dict[str, str] | None:
        series = {s["metric"]["job"]: s["value"][1] for s in query(stack_settings, "up")}
        wanted = {"mlflow", "alertmanager", "prometheus", "ingest", "monitor", "trainer"}
        return series if wanted <= set(series) and all(series[j] == "1" for j in wanted) else None

    jobs = wait_for(all_up, timeout_s=60, what="Prometheus to scrape every target")
    assert jobs
    mlflow_target = query(stack_settings, 'up{job="mlflow"}')[0]["metric"]["instance"]
    assert mlflow_target == stack_settings.mlflow.address
    # MLflow's own metrics reach Prometheus, not just the `up` that Prometheus writes itself.
    wait_for(
        lambda: query(stack_settings, '{job="mlflow", __name__=~"mlflow_.+"}'),
        timeout_s=60,
        what="an mlflow_* series",
    )
    wait_for(
        lambda: query(stack_settings, 'bottega_ingest_ready{job="ingest"} == 1'),
        timeout_s=60,
        what="the ingest's own readiness metric",
    )


def test_prometheus_loads_the_rules_and_finds_alertmanager(
    stack: LocalStack, stack_settings: StackSettings
) -> None:
    rules = httpx.get(f"{stack_settings.prometheus.url}/api/v1/rules", timeout=5).json()
    names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert names == {
        "ServiceDown",
        "PredictionLatencyHigh",
        "IngestLagHigh",
        "FeatureDriftDetected",
        "PredictionDriftDetected",
        "ModelQualityDegraded",
    }

    def alertmanager_found() -> bool:
        data = httpx.get(f"{stack_settings.prometheus.url}/api/v1/alertmanagers", timeout=5)
        active = data.json()["data"]["activeAlertmanagers"]
        return any(stack_settings.alertmanager.address in a["url"] for a in active)

    wait_for(alertmanager_found, timeout_s=30, what="Prometheus to discover Alertmanager")
    status = httpx.get(f"{stack_settings.alertmanager.url}/api/v2/status", timeout=5).json()
    assert status["config"]["original"].count("receiver: log") >= 1
