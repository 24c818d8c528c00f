"""The model registry: MLflow's registered models, behind a small interface.

Names shared by every process live here: the experiment and registered model of each use case,
the aliases, and the tag keys that training and promotion write on a model version. The
interface (:class:`Registry`) is what the promotion policy and the CLI use, so unit tests hand
them an in-memory fake; :class:`MlflowRegistry` is the real thing.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from typing import Any, Protocol

from bottega.bus import Producer
from bottega.errors import BottegaError
from bottega.events import ModelEvent
from bottega.settings import KafkaSettings

log = logging.getLogger(__name__)

EXPERIMENTS = {"fraud": "fraud"}
MODEL_NAMES = {"fraud": "fraud-detector"}
CHAMPION = "champion"
CHALLENGER = "challenger"

# Version tags written by training.
TAG_MODEL_KIND = "bottega.model_kind"
TAG_HOLDOUT_START = "bottega.holdout_start"
TAG_HOLDOUT_END = "bottega.holdout_end"
# "lo:hi": the holdout is the rows of the cards whose hash bucket lies in [lo, hi); absent: by time.
TAG_HOLDOUT_CARDS = "bottega.holdout_cards"
# The holdout rows of a version's training run, logged as an artifact of that run.
HOLDOUT_DIR = "holdout"
HOLDOUT_FILE = "holdout.parquet"
HOLDOUT_ARTIFACT = f"{HOLDOUT_DIR}/{HOLDOUT_FILE}"
TAG_LABELS_AS_OF = "bottega.labels_as_of"
TAG_FINGERPRINT = "bottega.data_fingerprint"
# Version tags written by promotion.
TAG_DECISION = "bottega.decision"
TAG_REASON = "bottega.decision_reason"
TAG_PREVIOUS_CHAMPION = "bottega.previous_champion"
DECISION_METRICS_PREFIX = "bottega.decision."


class RegistryError(BottegaError):
    """The registry does not hold what was asked for."""

    http_status = 404


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, as the policy and the CLI see it."""

    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    created_ms: int = 0


class Registry(Protocol):
    """What promotion and the CLI need from a model registry."""

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first."""

    def get(self, name: str, version: str) -> ModelVersion:
        """One version; RegistryError when it does not exist."""

    def by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version that holds ``alias``, or None."""

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``."""

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Write tags on a version."""

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` (no error when nothing holds it)."""


# Feast registers a plugin in this MLflow group; loading it imports the whole ``feast`` package.
_HEADER_PLUGINS = "mlflow.request_header_provider"


def skip_feast_mlflow_plugin() -> bool:
    """Keep MLflow from importing all of Feast in a process that does not otherwise use it.

    Feast registers an ``mlflow.request_header_provider`` entry point. MLflow loads every such
    plugin on its first REST call, and loading Feast's imports the whole ``feast`` package:
    about 6 s on a 2-core machine, paid by every ``bottega models`` and ``rollback`` and by
    the monitor's start (the promotion job reads the feature store: it imports Feast anyway).
    The provider only adds a header while Feast's own MLflow data source has set its context
    variable, which no Bottega process does, so leaving it out changes no request.

    True when the filter is in place; False when MLflow has already loaded its plugins (too
    late, nothing to save) or no longer has the hook (nothing changed).
    """
    if "mlflow.tracking.request_header.registry" in sys.modules:
        return False
    from mlflow.utils import plugins

    found = getattr(plugins, "get_entry_points", None)
    if found is None:
        return False
    if getattr(found, "skips_feast", False):
        return True

    def get_entry_points(group: str) -> list[EntryPoint]:
        points: list[EntryPoint] = found(group)
        if group != _HEADER_PLUGINS:
            return points
        return [point for point in points if not point.value.startswith("feast.")]

    get_entry_points.skips_feast = True  # type: ignore[attr-defined]
    plugins.get_entry_points = get_entry_points
    return True


class MlflowRegistry:
    """:class:`Registry` over an MLflow tracking server."""

    def __init__(self, tracking_uri: str) -> None:
        skip_feast_mlflow_plugin()
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri, registry_uri=tracking_uri)

    def _aliases(self, name: str) -> dict[str, tuple[str, ...]]:
        """Version to aliases: search results do not carry them, the registered model does."""
        aliases: dict[str, list[str]] = {}
        for alias, version in (self.client.get_registered_model(name).aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        return {version: tuple(sorted(names)) for version, names in aliases.items()}

    def _version(self, mv: Any, aliases: tuple[str, ...] | None = None) -> ModelVersion:
        run = self.client.get_run(mv.run_id) if mv.run_id else None
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or "",
            aliases=aliases if aliases is not None else tuple(getattr(mv, "aliases", ()) or ()),
            tags=dict(mv.tags or {}),
            metrics=dict(run.data.metrics) if run is not None else {},
            created_ms=int(mv.creation_timestamp or 0),
        )

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first (none when the model is not registered)."""
        found = self.client.search_model_versions(f"name='{name}'")
        if not found:
            return []
        aliases = self._aliases(name)
        return sorted(
            (self._version(mv, aliases.get(str(mv.version), ())) for mv in found),
            key=lambda v: int(v.version),
            reverse=True,
        )

    def get(self, name: str, version: str) -> ModelVersion:
        """One version; RegistryError when it does not exist."""
        from mlflow.exceptions import MlflowException

        try:
            return self._version(self.client.get_model_version(name, version))
        except MlflowException as exc:
            if not absent(exc):
                raise
            raise RegistryError(
                f"{name} has no version {version}", hint="list them with: bottega models"
            ) from None

    def by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version that holds ``alias``, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self._version(self.client.get_model_version_by_alias(name, alias))
        except MlflowException as exc:
            if not absent(exc):
                raise
            return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``."""
        self.client.set_registered_model_alias(name, alias, version)

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Write tags on a version."""
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` (no error when nothing holds it)."""
        if self.by_alias(name, alias) is not None:
            self.client.delete_registered_model_alias(name, alias)


def rollback(registry: Registry, name: str) -> tuple[ModelVersion, ModelVersion]:
    """Point ``champion`` back at the version it replaced; return (demoted, restored).

    Promotion records the replaced champion on the new one (``bottega.previous_champion``), so
    each rollback steps one promotion back.
    """
    current = registry.by_alias(name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back", hint="bottega models")
    previous = current.tags.get(TAG_PREVIOUS_CHAMPION)
    if not previous:
        raise RegistryError(
            f"{name} v{current.version} was the first champion: there is nothing to roll back to"
        )
    restored = registry.get(name, previous)
    registry.set_alias(name, CHAMPION, restored.version)
    registry.set_tags(
        name, current.version, {TAG_DECISION: "rolled_back", TAG_REASON: "rolled back by a user"}
    )
    log.info("rolled back", extra={"model": name, "from": current.version, "to": restored.version})
    return current, restored


def publish_model_event(kafka: KafkaSettings, event: ModelEvent, timeout_s: float = 10.0) -> bool:
    """Publish ``event`` on ``model-events`` and wait for the broker; False (logged) on failure.

    The registry's alias is the source of truth: a decision stands when Kafka is down, and a
    model server that missed the event finds the alias when it next reads it.
    """
    bound_ms = int(timeout_s * 1000)
    producer: Producer | None = None
    try:
        producer = Producer(
            kafka,
            client_id="bottega-registry",
            bootstrap_timeout_ms=bound_ms,
            max_block_ms=bound_ms,
            request_timeout_ms=bound_ms,
            outage_wait_s=0,
        )
        producer.publish(event).get(timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001  (kafka-python raises many unrelated types)
        log.warning("could not publish the model event", extra={"error": repr(exc)})
        return False
    finally:
        if producer is not None:
            # Bounded: a message the broker never took must not hold the caller for longer.
            producer.close(timeout=timeout_s)
    return True


# What the server answers for a model, version or alias that does not exist (or a version that
# is not a number). Anything else, the server down above all, is not "no such version": a
# promotion that took "the registry did not answer" for "there is no champion" would promote
# its challenger without comparing it with the champion.
ABSENT_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


def absent(exc: Exception) -> bool:
    """True when an MLflow error says the thing asked for does not exist."""
    return getattr(exc, "error_code", None) in ABSENT_CODES


def registry_failure(exc: Exception) -> str:
    """One line for a failed call to the MLflow server: the first line of MLflow's message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "MLflow failed: " + (lines[0][:300] if lines else type(exc).__name__)
