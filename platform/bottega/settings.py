"""Typed settings shared by every Bottega process.

Every host and port is a setting. Values come, in order of precedence, from keyword arguments,
environment variables (``BOTTEGA_`` prefix, ``__`` between nested fields, for example
``BOTTEGA_KAFKA__PORT=19092``), an env file (``.env`` by default, or the file named by
``BOTTEGA_ENV_FILE``), and the defaults below. ``localhost`` appears only here, as a default.

Each process builds its own settings object inside ``main()``; nothing is read at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bottega.errors import ConfigError, describe_validation_error

DEFAULT_HOST = "127.0.0.1"
# platform/bottega/settings.py -> the checkout, for an editable install (local mode) and for the
# application image, which installs the checkout the same way.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class Endpoint(BaseModel):
    """Where a service listens: the host clients dial and the port it binds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = DEFAULT_HOST
    port: int = Field(ge=1, le=65535)

    @property
    def address(self) -> str:
        """``host:port``, as Kafka's bootstrap list and Prometheus targets want it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The service's base HTTP URL."""
        return f"http://{self.host}:{self.port}"


class KafkaSettings(Endpoint):
    """The Kafka broker and the defaults for topics that Bottega creates."""

    port: int = Field(default=9092, ge=1, le=65535)
    controller_port: int = Field(default=9094, ge=1, le=65535)
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    heap: str = "512m"
    request_timeout_ms: int = Field(default=10_000, ge=100)
    reconnect_backoff_max_ms: int = Field(
        default=1_000,
        ge=50,
        description="The longest a client waits between reconnection attempts. kafka-python's "
        "own default grows to 30 s, so a client could sit idle for half a minute after a broker "
        "restart; 1 s is what Kafka's Java clients use.",
    )
    outage_wait_s: float = Field(
        default=300.0,
        ge=0,
        description="How long a producer keeps retrying a send that the broker could not take "
        "(no metadata: the broker is down) before it gives up and raises.",
    )
    max_event_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="A consumed message larger than this is dead-lettered unparsed; events are "
        "a few kB, and parsing a megabyte of JSON per message would stall a consumer.",
    )

    @property
    def bootstrap_servers(self) -> str:
        """The bootstrap list for Kafka clients."""
        return self.address


# One class per service, so that each field's default port survives an environment override of
# its host alone (``BOTTEGA_MLFLOW__HOST=mlflow`` keeps port 5000).
class MlflowEndpoint(Endpoint):
    """The MLflow tracking server and registry."""

    port: int = Field(default=5000, ge=1, le=65535)


class PrometheusEndpoint(Endpoint):
    """Prometheus."""

    port: int = Field(default=9090, ge=1, le=65535)


class AlertmanagerEndpoint(Endpoint):
    """Alertmanager."""

    port: int = Field(default=9093, ge=1, le=65535)


class GrafanaEndpoint(Endpoint):
    """Grafana (Docker mode only), and the password of its ``admin`` user.

    With no ``admin_password`` (``BOTTEGA_GRAFANA__ADMIN_PASSWORD``), ``bottega up`` generates one
    into ``<home>/secrets/grafana-admin-password``. Dashboards open without a login (read only).
    """

    port: int = Field(default=3001, ge=1, le=65535)
    admin_password: SecretStr | None = Field(
        default=None, description="Grafana's admin password; default: the generated file."
    )


class ServingEndpoint(Endpoint):
    """The BentoML model server."""

    port: int = Field(default=3000, ge=1, le=65535)


class TrainerEndpoint(Endpoint):
    """The trainer's API and Alertmanager webhook, and the bearer token that guards them.

    With no ``token`` (``BOTTEGA_TRAINER__TOKEN``), the stack generates one into
    ``<home>/secrets/trainer-token`` and both Alertmanager and the trainer read it from there
    (:mod:`bottega.auth`). The token is never logged and never committed.
    """

    port: int = Field(default=8081, ge=1, le=65535)
    token: SecretStr | None = Field(
        default=None, description="Bearer token of the webhook; default: the generated file."
    )


class MonitorEndpoint(Endpoint):
    """The monitor's metrics and reports."""

    port: int = Field(default=8082, ge=1, le=65535)


class IngestEndpoint(Endpoint):
    """The ingest service's metrics."""

    port: int = Field(default=8083, ge=1, le=65535)


class FeastSettings(BaseModel):
    """The feature store (``BOTTEGA_FEAST__*``): SQLite online by default, Redis when set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(default="bottega", pattern=r"^[a-z][a-z0-9_]*$")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection_string: str = Field(
        default=f"{DEFAULT_HOST}:6379,db=0",
        description="Feast's Redis connection string, used when online_store is redis.",
    )
    registry: str | None = Field(
        default=None,
        description="SQLAlchemy URL of a SQL registry (Docker mode: Postgres); "
        "unset: a registry file under <home>/feast.",
    )


class BottegaSettings(BaseSettings):
    """The shared base: where state lives, how to log, and where every service listens.

    Process-specific settings subclass this and add a nested section of their own, so that their
    variables read ``BOTTEGA_<SECTION>__<FIELD>``.
    """

    model_config = SettingsConfigDict(
        env_prefix="BOTTEGA_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    project_root: Path = Field(
        default_factory=lambda: _PACKAGE_ROOT,
        description="The checkout: where monitoring/, infra/ and scenarios/ live.",
    )
    home: Path = Field(
        default=Path(".bottega"),
        description="Root of all local-mode state; relative paths are under project_root.",
    )
    bind_host: str = Field(default=DEFAULT_HOST, description="Address local processes bind.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    feast: FeastSettings = Field(default_factory=FeastSettings)
    mlflow: MlflowEndpoint = Field(default_factory=MlflowEndpoint)
    prometheus: PrometheusEndpoint = Field(default_factory=PrometheusEndpoint)
    alertmanager: AlertmanagerEndpoint = Field(default_factory=AlertmanagerEndpoint)
    grafana: GrafanaEndpoint = Field(default_factory=GrafanaEndpoint)
    serving: ServingEndpoint = Field(default_factory=ServingEndpoint)
    trainer: TrainerEndpoint = Field(default_factory=TrainerEndpoint)
    monitor: MonitorEndpoint = Field(default_factory=MonitorEndpoint)
    ingest: IngestEndpoint = Field(default_factory=IngestEndpoint)

    @model_validator(mode="after")
    def _absolute_paths(self) -> BottegaSettings:
        # Resolve once, so that every child process and pid file sees the same paths whatever
        # directory a command was started from.
        self.project_root = self.project_root.expanduser().resolve()
        home = self.home.expanduser()
        self.home = (home if home.is_absolute() else self.project_root / home).resolve()
        return self

    @property
    def monitoring_dir(self) -> Path:
        """Prometheus, Alertmanager and Grafana config, as code."""
        return self.project_root / "monitoring"

    @property
    def feature_repo_dir(self) -> Path:
        """The feature store's registry, online database and offline tables (local mode)."""
        return self.home / "feast"

    @property
    def infra_dir(self) -> Path:
        """Compose files, Dockerfiles and the Kafka broker's manifest."""
        return self.project_root / "infra"

    def to_env(self) -> dict[str, str]:
        """The shared settings as ``BOTTEGA_*`` variables, for a child process to read back."""
        env: dict[str, str] = {}

        def put(prefix: str, value: Any) -> None:
            if isinstance(value, SecretStr):
                # A child process needs the value itself; the environment is not a log.
                env[prefix] = value.get_secret_value()
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    put(f"{prefix}__{name.upper()}", getattr(value, name))
            elif value is not None:
                env[prefix] = str(value)

        for name in BottegaSettings.model_fields:
            put(f"BOTTEGA_{name.upper()}", getattr(self, name))
        return env

    @property
    def mlflow_tracking_uri(self) -> str:
        """The tracking URI that clients of the MLflow server use."""
        return self.mlflow.url


S = TypeVar("S", bound=BottegaSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build a settings object from the environment over an env file.

    The env file is ``BOTTEGA_ENV_FILE`` when set, else ``.env`` in the working directory, else
    ``.env`` at the checkout's root. A wrong value raises :class:`ConfigError` naming the field.
    """
    env_file = os.environ.get("BOTTEGA_ENV_FILE")
    if env_file is None:
        local = Path(".env")
        env_file = str(local if local.exists() else _PACKAGE_ROOT / ".env")
    try:
        return cls(_env_file=env_file, **overrides)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid settings: {describe_validation_error(exc)}",
            hint="variables are BOTTEGA_<FIELD>, with __ between nested fields; see .env.example",
        ) from exc
