"""Render ``monitoring/prometheus.yml`` and ``monitoring/alertmanager.yml`` for local mode.

The committed file names compose services as targets (``mlflow:5000``). Local mode keeps every
job, rule and interval, and swaps each target for the host and port that settings give the
service of the same name. A scrape job that names no Bottega service is a config error, not a
target that silently never answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bottega.errors import ConfigError
from bottega.settings import BottegaSettings, Endpoint

# Scrape jobs are named after the services they scrape.
SCRAPED_SERVICES = (
    "prometheus",
    "alertmanager",
    "mlflow",
    "serving",
    "trainer",
    "monitor",
    "ingest",
)


def service_endpoints(settings: BottegaSettings) -> dict[str, Endpoint]:
    """Each scrapeable service's endpoint, by job name."""
    return {name: getattr(settings, name) for name in SCRAPED_SERVICES}


def render_prometheus_config(settings: BottegaSettings, destination: Path) -> dict[str, Any]:
    """Write the local-mode Prometheus config to ``destination`` and return it."""
    source = settings.monitoring_dir / "prometheus.yml"
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    endpoints = service_endpoints(settings)

    for job in config.get("scrape_configs", []):
        name = job.get("job_name")
        if name not in endpoints:
            raise ConfigError(
                f"{source}: scrape job {name!r} names no Bottega service",
                hint=f"name jobs after one of {', '.join(SCRAPED_SERVICES)}",
            )
        job["static_configs"] = [{"targets": [endpoints[name].address]}]

    for manager in config.get("alerting", {}).get("alertmanagers", []):
        manager["static_configs"] = [{"targets": [settings.alertmanager.address]}]

    # Rule paths are relative to the committed config; make them absolute for the copy.
    config["rule_files"] = [
        str((source.parent / pattern).resolve()) for pattern in config.get("rule_files", [])
    ]
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


# The Alertmanager receiver that calls the trainer's webhook.
TRAINER_RECEIVER = "trainer"
WEBHOOK_PATH = "/webhook"


def render_alertmanager_config(
    settings: BottegaSettings, destination: Path, credentials_file: Path
) -> dict[str, Any]:
    """Write the local-mode Alertmanager config to ``destination`` and return it.

    The trainer receiver's webhook gets the trainer's URL from settings and reads its bearer
    token from ``credentials_file``; the token itself never enters the config.
    """
    source = settings.monitoring_dir / "alertmanager.yml"
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    receivers = [r for r in config.get("receivers", []) if r.get("name") == TRAINER_RECEIVER]
    hooks = [hook for r in receivers for hook in r.get("webhook_configs", [])]
    if not hooks:
        raise ConfigError(
            f"{source}: no {TRAINER_RECEIVER!r} receiver with a webhook",
            hint="retrain alerts must reach the trainer",
        )
    for hook in hooks:
        hook["url"] = f"{settings.trainer.url}{WEBHOOK_PATH}"
        hook.setdefault("http_config", {})["authorization"] = {
            "type": "Bearer",
            "credentials_file": str(credentials_file),
        }
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(yaml.safe_dump(config, sort_keys=False))
    return config
