"""Settings of the stack runner, the process behind ``bottega up|down|status|logs``."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from bottega.settings import BottegaSettings


class StackOptions(BaseModel):
    """How the local stack runner starts and stops processes (``BOTTEGA_STACK__*``)."""

    model_config = ConfigDict(extra="forbid")

    startup_timeout_s: float = Field(default=120.0, gt=0)
    stop_timeout_s: float = Field(default=30.0, gt=0)
    kafka_libs_dir: Path | None = Field(
        default=None, description="The broker's jars; default <home>/lib/kafka."
    )
    mlflow_workers: int = Field(default=1, ge=1)
    java: str = Field(default="java", description="The Java 17+ executable for the broker.")
    prometheus_bin: str = "prometheus"
    alertmanager_bins: tuple[str, ...] = ("prometheus-alertmanager", "alertmanager")
    docker: str = Field(
        default="docker", description="The Docker CLI, with Compose v2 (Docker mode)."
    )
    docker_wait_timeout_s: float = Field(
        default=1800.0,
        gt=0,
        description="How long Docker mode's `up` waits for every container to be healthy once "
        "the images are built; the first start bootstraps a champion.",
    )
    compose_project: str = Field(
        default="bottega",
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Docker mode's Compose project name: its containers, network and volumes.",
    )
    grafana: bool = Field(
        default=True,
        description="Docker mode: start Grafana (the one image pulled from a registry). Where "
        "it cannot be pulled, `up` starts the stack without it and says so.",
    )
    build_ca_bundle: Path | None = Field(
        default=None,
        description="Docker mode: a PEM file of CA certificates that image builds trust "
        "(a TLS-intercepting proxy's); `up` copies it into infra/certs/.",
    )


class StackSettings(BottegaSettings):
    """Settings for the stack runner."""

    stack: StackOptions = Field(default_factory=StackOptions)

    @property
    def kafka_libs_dir(self) -> Path:
        """Where ``make setup`` puts the broker's jars."""
        return self.stack.kafka_libs_dir or self.home / "lib" / "kafka"
