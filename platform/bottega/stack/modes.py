"""One stack, two declarations: Docker mode's compose file against local mode's service specs.

DESIGN.md asks that both modes run the same commands, config files and ports. Local mode's specs
(:mod:`bottega.stack.services`) and ``infra/compose.yaml`` are both written by hand, so each
function here compares one aspect and returns what differs, as sentences; an empty list means
the two agree. Only hostnames may differ: a compose service dials ``kafka:9092`` where a local
process dials ``127.0.0.1:9092``.

Some compose services have no local twin, on purpose; they are listed below with the reason, so
that a service added to one mode alone is a difference, not a silent drift.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bottega.settings import BottegaSettings
from bottega.stack.compose import is_one_shot
from bottega.stack.spec import ServiceSpec

# Compose services that local mode replaces with something else.
DOCKER_ONLY = {
    "redis": "local mode's online store is SQLite unless settings name a Redis",
    "postgres": "local mode keeps MLflow on SQLite and Feast's registry in a file",
    "grafana": "local mode has no Grafana (DESIGN.md)",
}
# Compose's one-shot jobs, and what does the same work in local mode.
ONE_SHOT_JOBS = {
    "kafka-init": "kafka's after_start hook creates the topics",
    "feast-apply": "the ingest's and the model server's prepare hook applies the feature repo",
    "trainer-token": "alertmanager's and the trainer's prepare hook writes the token file",
    "bootstrap": "`bottega bootstrap`, run by hand or by `bottega demo`",
}

_PORT = re.compile(r"^(?:(?P<ip>[\d.]+):)?(?:(?P<host>[^:]+):)?(?P<container>\d+)$")
_PUBLISHED = re.compile(r"^(?P<ip>[\d.]+):(?P<host>\$\{[^}]+\}|\d+):(?P<container>\d+)$")
_SETTING = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):-(?P<default>\d+)\}$")


def compare_services(
    compose_services: Mapping[str, Mapping[str, Any]], local_names: Iterable[str]
) -> list[str]:
    """Both modes run the same services, besides those listed above; jobs run once, services
    are health-checked."""
    local = set(local_names)
    problems = []
    for name, service in compose_services.items():
        if name in ONE_SHOT_JOBS:
            if not is_one_shot(service):
                problems.append(f"{name} is a one-shot job, but compose restarts or checks it")
        elif name in DOCKER_ONLY:
            continue
        elif name not in local:
            problems.append(f"compose runs {name!r}, which local mode lacks")
        elif "healthcheck" not in service:
            problems.append(f"compose's {name} has no healthcheck")
    for name in sorted(local - set(compose_services)):
        problems.append(f"local mode runs {name!r}, which compose lacks")
    return problems


def _argv(command: Sequence[str]) -> list[str]:
    """A command with its interpreter named ``python`` wherever it lives."""
    argv = [str(arg) for arg in command]
    if argv and Path(argv[0]).name.startswith("python"):
        argv[0] = "python"
    return argv


def option_names(command: Sequence[str]) -> set[str]:
    """The ``--options`` a command line passes, without their values."""
    return {arg.split("=", 1)[0] for arg in command if arg.startswith("--")}


def compare_commands(
    compose_services: Mapping[str, Mapping[str, Any]], specs: Iterable[ServiceSpec]
) -> list[str]:
    """Bottega's own services run the very same command; MLflow, Prometheus and Alertmanager
    the same program with the same options (their values hold paths and hosts)."""
    problems = []
    for spec in specs:
        service = compose_services.get(spec.name)
        if service is None or spec.name == "kafka":  # Kafka: see compare_kafka_config
            continue
        local = _argv(spec.command())
        theirs = _argv(service.get("command") or [])
        if local[:2] == ["python", "-m"] and local[2].startswith("services."):
            if theirs != local:
                problems.append(f"{spec.name}: compose runs {theirs}, local mode {local}")
        elif option_names(local) != option_names(theirs):
            missing = sorted(option_names(local) - option_names(theirs))
            extra = sorted(option_names(theirs) - option_names(local))
            problems.append(
                f"{spec.name}: options only local mode passes {missing}, "
                f"only compose passes {extra}"
            )
    return problems


def container_ports(service: Mapping[str, Any]) -> set[int]:
    """The ports a compose service listens on: published ones' container side, and exposed."""
    ports = {int(str(p)) for p in service.get("expose", [])}
    for entry in service.get("ports", []):
        match = _PORT.match(str(entry))
        if match:
            ports.add(int(match.group("container")))
    return ports


def compare_ports(
    compose_services: Mapping[str, Mapping[str, Any]], specs: Iterable[ServiceSpec]
) -> list[str]:
    """Each service listens on the same ports in both modes (local specs on default settings)."""
    problems = []
    for spec in specs:
        service = compose_services.get(spec.name)
        if service is None:
            continue
        local = {port.port for port in spec.ports}
        if container_ports(service) != local:
            problems.append(
                f"{spec.name}: compose listens on {sorted(container_ports(service))}, "
                f"local mode on {sorted(local)}"
            )
    return problems


def compare_published_ports(
    raw_services: Mapping[str, Mapping[str, Any]], settings: BottegaSettings
) -> list[str]:
    """Each port published on the host is ``127.0.0.1:${BOTTEGA_<SERVICE>__PORT:-default}:port``,
    with the setting's own default, so a browser finds a service where local mode puts it."""
    problems = []
    for name, service in raw_services.items():
        for entry in service.get("ports", []):
            published = _PUBLISHED.match(str(entry))
            ip, host, container = published.groups() if published else ("", "", "0")
            setting = _SETTING.match(host)
            endpoint = getattr(settings, name, None)
            expected = f"BOTTEGA_{name.upper()}__PORT"
            if ip != "127.0.0.1":
                problems.append(f"{name}: {entry!r} is not published on 127.0.0.1 only")
            elif setting is None or setting.group("name") != expected:
                problems.append(f"{name}: {entry!r} does not take its host port from {expected}")
            elif endpoint is None or int(setting.group("default")) != endpoint.port:
                problems.append(f"{name}: {entry!r}'s default is not the setting's default")
            elif int(container) != endpoint.port:
                problems.append(f"{name}: {entry!r} does not publish the service's own port")
    return problems


def settings_names(settings_class: type[BaseModel], prefix: str = "BOTTEGA") -> set[str]:
    """Every environment variable a settings class reads (``BOTTEGA_KAFKA__PORT``, ...)."""
    names = set()
    for field_name, field in settings_class.model_fields.items():
        name = f"{prefix}{'_' if prefix == 'BOTTEGA' else '__'}{field_name.upper()}"
        names.add(name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= settings_names(annotation, name)
    return names


def compare_settings_names(
    compose_services: Mapping[str, Mapping[str, Any]],
    known: Mapping[str, type[BottegaSettings]] | None = None,
) -> list[str]:
    """Every ``BOTTEGA_*`` variable compose sets is one the service's settings class reads, so a
    misspelt or renamed setting cannot be silently ignored in one mode."""
    problems = []
    for name, service in compose_services.items():
        cls = (known or {}).get(name, BottegaSettings)
        readable = settings_names(cls)
        for variable in _environment(service):
            if variable.startswith("BOTTEGA_") and variable not in readable:
                problems.append(f"{name}: {variable} is not a setting of {cls.__name__}")
    return problems


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


_TEMPLATE_NAME = re.compile(r"\$\{(\w+)\}")
_ENVSUBST = re.compile(r"envsubst '([^']*)'")
_EXPORT = re.compile(r"^export (\w+)=", re.M)


def compare_kafka_start(template_text: str, start_script: str) -> list[str]:
    """Docker mode's broker fills local mode's ``server.properties``: its start script hands
    envsubst exactly the template's placeholders, and sets each of them."""
    placeholders = set(_TEMPLATE_NAME.findall(template_text))
    given = _ENVSUBST.search(start_script)
    substituted = set(_TEMPLATE_NAME.findall(given.group(1))) if given else set()
    exported = set(_EXPORT.findall(start_script))
    problems = []
    if substituted != placeholders:
        problems.append(
            f"the start script fills {sorted(substituted)}, the template has {sorted(placeholders)}"
        )
    if missing := sorted(substituted - exported):
        problems.append(f"the start script never sets {missing}")
    return problems


def compare_scrape_targets(
    prometheus_config: Mapping[str, Any], compose_services: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Every target Prometheus scrapes in Docker mode is a compose service, on one of its ports,
    and every job is named after the service it scrapes (which local mode relies on)."""
    problems = []
    jobs = list(prometheus_config.get("scrape_configs", []))
    managers = prometheus_config.get("alerting", {}).get("alertmanagers", [])
    for job in [*jobs, *({"job_name": "alertmanager", **m} for m in managers)]:
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                host, _, port = str(target).rpartition(":")
                service = compose_services.get(host)
                if service is None:
                    problems.append(f"{job['job_name']}: target {target} is no compose service")
                elif int(port) not in container_ports(service):
                    problems.append(f"{job['job_name']}: {host} does not listen on {port}")
                elif host != job["job_name"]:
                    problems.append(f"job {job['job_name']} scrapes another service, {host}")
    return problems
