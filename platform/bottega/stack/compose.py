"""Docker mode: the stack as the Compose project that ``infra/compose.yaml`` declares.

``bottega up|down|logs`` run ``docker compose`` on the project's files; ``bottega status`` reads
each container's state and health through the Docker SDK for Python (imported only when asked,
so importing this module touches no Docker engine).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml
from dotenv import dotenv_values

from bottega.auth import ensure_secret_file, read_secret
from bottega.errors import ConfigError, PrerequisiteMissing
from bottega.settings import DEFAULT_HOST, BottegaSettings, Endpoint
from bottega.stack.docker import answers
from bottega.stack.runner import ServiceStatus, State
from bottega.stack.settings import StackSettings

log = logging.getLogger(__name__)

COMPOSE_FILE = "compose.yaml"
GPU_FILE = "compose.gpu.yaml"
# The compose service `bottega replay` and other host-side commands run in (profile `tools`).
TOOLS_SERVICE = "cli"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"

# The secrets compose interpolates, each kept in <home>/secrets/<file> when .env does not set it.
SECRET_FILES = {
    "BOTTEGA_TRAINER__TOKEN": "trainer-token",
    "BOTTEGA_GRAFANA__ADMIN_PASSWORD": "grafana-admin-password",
    "POSTGRES_PASSWORD": "postgres-password",
}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Compose's variable interpolation: ``$$``, ``${X}``, ``${X:-default}``, ``${X-default}``,
    ``${X:?error}`` and ``${X?error}``. A required variable that is unset is a ConfigError."""

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = environ.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-") and empty:
            return arg
        if op in (":?", "?") and empty:
            raise ConfigError(f"compose needs {name}: {arg or 'it is not set'}")
        return value or ""

    return _VARIABLE.sub(substitute, text)


def _interpolate_tree(node: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [_interpolate_tree(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, environ) for key, value in node.items()}
    return node


def load_compose(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A compose file as compose reads it: YAML (anchors and merge keys resolved), interpolated
    from ``environ``, or left raw when ``environ`` is None."""
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ConfigError(f"{path} is not a compose file")
    return document if environ is None else dict(_interpolate_tree(document, environ))


def active_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that ``up`` starts: every one that no profile holds back."""
    return {
        name: service
        for name, service in compose.get("services", {}).items()
        if not service.get("profiles")
    }


def is_one_shot(service: Mapping[str, Any]) -> bool:
    """A job that runs to completion: never restarted, and no health to check."""
    return service.get("restart") == "no" and "healthcheck" not in service


def env_file(settings: BottegaSettings) -> Path | None:
    """The env file that settings are read from (``load_settings``'s choice), if there is one."""
    named = os.environ.get("BOTTEGA_ENV_FILE")
    for candidate in [Path(named)] if named else [Path(".env"), settings.project_root / ".env"]:
        if candidate.is_file():
            return candidate.resolve()
    return None


def secrets_environment(settings: BottegaSettings, given: Mapping[str, str]) -> dict[str, str]:
    """The secrets compose needs that ``given`` (the environment and the env file) lacks, each
    generated once into ``<home>/secrets/`` (owner-only) and reused on every ``up``."""
    env: dict[str, str] = {}
    for name, file_name in SECRET_FILES.items():
        if given.get(name):
            continue
        path = ensure_secret_file(settings.home / "secrets" / file_name, None)
        env[name] = read_secret(path).get_secret_value()
    return env


ENGINE_HINT = "start it (as root: dockerd &, or systemctl start docker), or run MODE=local make up"
# `env_file` entries with `required:` (compose.yaml's settings file) came in Compose 2.24.
MIN_COMPOSE = (2, 24)
UNKNOWN_COMPOSE = (9999,)
PLUGIN_HINT = (
    "install the Compose v2 plugin: Docker Desktop has it; on Debian, make docker-engine builds "
    "it (or run MODE=local make up)"
)


class ComposeProject:
    """``docker compose`` on Bottega's compose files, with the settings' env file and secrets."""

    def __init__(self, settings: StackSettings, *, gpu: bool = False) -> None:
        self.settings = settings
        self.gpu = gpu
        self.profiles: list[str] = []

    @property
    def name(self) -> str:
        """The Compose project's name: its containers', network's and volumes' prefix."""
        return self.settings.stack.compose_project

    @property
    def files(self) -> list[Path]:
        """The compose files: the stack, and the GPU override when asked for."""
        infra = self.settings.infra_dir
        return [infra / COMPOSE_FILE, *([infra / GPU_FILE] if self.gpu else [])]

    def require(self) -> str:
        """The Docker CLI, once ``docker compose version`` answers and an engine answers ``docker
        info``; else PrerequisiteMissing with the one line that says what to do."""
        docker = shutil.which(self.settings.stack.docker)
        if docker is None:
            raise PrerequisiteMissing(
                f"{self.settings.stack.docker} is missing",
                hint="install Docker Engine (Debian: apt-get install -y docker.io; or make "
                "docker-engine), or run MODE=local make up",
            )
        version = compose_version(docker)
        if version is None:
            raise PrerequisiteMissing("docker compose (Compose v2) is missing", hint=PLUGIN_HINT)
        if version < MIN_COMPOSE:
            raise PrerequisiteMissing(
                f"docker compose {'.'.join(map(str, version))} is too old: Docker mode needs "
                f"{'.'.join(map(str, MIN_COMPOSE))} or newer (an optional env_file)",
                hint=PLUGIN_HINT,
            )
        if not answers([docker, "info"]):
            raise PrerequisiteMissing("no Docker engine answers", hint=ENGINE_HINT)
        return docker

    def command(self, *args: str, docker: str | None = None) -> list[str]:
        """``docker compose`` with the project's name, files, profiles and env file, then
        ``args``."""
        base = [docker or self.settings.stack.docker, "compose", "--project-name", self.name]
        for path in self.files:
            base += ["--file", str(path)]
        for profile in self.profiles:
            base += ["--profile", profile]
        # Compose reads .env from the compose file's folder; settings read the checkout's.
        settings_env = env_file(self.settings)
        if settings_env is not None:
            base += ["--env-file", str(settings_env)]
        return [*base, *args]

    def environment(self) -> dict[str, str]:
        """This process's environment plus the secrets that neither it nor the env file sets,
        and the env file's path, which the compose file hands Bottega's containers."""
        path = env_file(self.settings)
        from_file = {k: v for k, v in dotenv_values(path).items() if v} if path else {}
        secrets = secrets_environment(self.settings, {**from_file, **os.environ})
        return {**os.environ, **secrets, **({"BOTTEGA_ENV_FILE": str(path)} if path else {})}

    def up_args(self, services: Sequence[str] = ()) -> list[str]:
        """Start detached, with the images built before, and wait until every service is healthy
        or completed."""
        timeout = str(int(self.settings.stack.docker_wait_timeout_s))
        return ["up", "--no-build", "--detach", "--wait", "--wait-timeout", timeout, *services]

    def run(self, *args: str) -> int:
        """Run ``docker compose ARGS`` in the foreground; its exit status.

        Ctrl-C reaches compose from the terminal, and compose hands it to the container (a
        replay there stops cleanly, a second one aborts it): this process only waits for the
        end. A SIGTERM sent to this process alone is passed on.
        """
        docker = self.require()
        command = self.command(*args, docker=docker)
        log.debug("docker compose", extra={"compose_args": list(args)})
        children: list[subprocess.Popen[bytes]] = []

        def pass_on(signum: int, frame: object) -> None:
            for child in children:
                child.send_signal(signum)

        previous = {
            signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
            signal.SIGTERM: signal.signal(signal.SIGTERM, pass_on),
        }
        try:
            # compose gets the terminal's Ctrl-C itself, with Python's handlers left behind.
            children.append(
                subprocess.Popen(
                    command,
                    env=self.environment(),
                    preexec_fn=_default_signals,  # noqa: PLW1509
                )
            )
            return children[0].wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def start_logged(self, *args: str, log_path: Path) -> subprocess.Popen[bytes]:
        """Start ``docker compose ARGS`` with its output appended to ``log_path``; the caller
        waits on it (and narrates meanwhile)."""
        docker = self.require()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log.debug("docker compose", extra={"compose_args": list(args), "log": str(log_path)})
        with log_path.open("ab") as out:
            out.write(f"\n$ docker compose {' '.join(args)}\n".encode())
            out.flush()
            return subprocess.Popen(
                self.command(*args, docker=docker),
                env={**self.environment(), "COMPOSE_ANSI": "never"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )


def compose_version(docker: str) -> tuple[int, ...] | None:
    """The Compose plugin's version (``docker compose version --short``), or None when there is
    no plugin."""
    try:
        done = subprocess.run(
            [docker, "compose", "version", "--short"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", done.stdout.strip())
    if match is None:
        return UNKNOWN_COMPOSE  # a build from source that was not told its version ("dev")
    return tuple(int(part or 0) for part in match.groups())


def _default_signals() -> None:
    """In a child, before it runs: SIGINT and SIGTERM back to their default actions."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# -- status through the Docker SDK ------------------------------------------------------------


class ContainerLike(Protocol):
    """What ``status`` reads of a container (``docker.models.containers.Container``)."""

    labels: dict[str, str]
    attrs: dict[str, Any]


class ContainersLike(Protocol):
    """``DockerClient.containers``."""

    def list(self, all: bool = ..., filters: dict[str, Any] | None = ...) -> list[Any]: ...


class DockerClientLike(Protocol):
    """The part of ``docker.DockerClient`` that ``status`` uses."""

    containers: ContainersLike

    def close(self) -> None: ...


def docker_client() -> DockerClientLike:
    """A client for the engine that ``DOCKER_HOST`` or the default socket names."""
    import docker  # only Docker mode needs the SDK

    try:
        client: DockerClientLike = docker.from_env()
    except docker.errors.DockerException as exc:
        raise PrerequisiteMissing(
            f"cannot reach the Docker engine: {exc}", hint="start Docker, or run MODE=local"
        ) from None
    return client


def published_url(settings: BottegaSettings, service: str) -> str:
    """The URL a browser on this machine opens for ``service``, or "" when none is published."""
    endpoint = getattr(settings, service, None)
    if isinstance(endpoint, Endpoint) and service != "kafka":
        # Published on the loopback only (modes.compare_published_ports), whatever host the
        # containers dial each other by.
        return f"http://{DEFAULT_HOST}:{endpoint.port}"
    return ""


def container_state(container: ContainerLike, *, one_shot: bool) -> tuple[State, str]:
    """A container's row state and a short detail, from what the engine reports."""
    state = container.attrs.get("State", {})
    status = str(state.get("Status", "unknown"))
    health = (state.get("Health") or {}).get("Status")
    if status == "running":
        if one_shot:
            return "starting", "running"
        if health in (None, "healthy"):
            return "healthy", "running" + (" (healthy)" if health else "")
        if health == "starting":
            return "starting", "running (starting)"
        return "unhealthy", f"running ({health})"
    if status == "exited":
        code = int(state.get("ExitCode", -1))
        if one_shot and code == 0:
            return "completed", "exited (0)"
        return "stopped", f"exited ({code})"
    if status == "restarting":
        return "unhealthy", "restarting"
    return "stopped", status


def container_statuses(
    settings: StackSettings,
    *,
    client_factory: Callable[[], DockerClientLike] = docker_client,
) -> list[ServiceStatus]:
    """One row per service that ``up`` starts, in the compose file's order."""
    compose = load_compose(settings.infra_dir / COMPOSE_FILE)
    client = client_factory()
    project = settings.stack.compose_project
    try:
        found = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    finally:
        client.close()
    by_service = {c.labels.get(SERVICE_LABEL): c for c in found}
    # What `up` starts, and a profile's service (Grafana) where it runs; never the tools'.
    services = {
        name: service
        for name, service in compose.get("services", {}).items()
        if not service.get("profiles") or (name in by_service and name != TOOLS_SERVICE)
    }
    rows = []
    for name, service in services.items():
        container = by_service.get(name)
        if container is None:
            state: State = "stopped"
            detail = "no container"
        else:
            state, detail = container_state(container, one_shot=is_one_shot(service))
        rows.append(
            ServiceStatus(
                name=name,
                state=state,
                url=published_url(settings, name),
                pid=None,
                description="one-shot job" if is_one_shot(service) else "",
                detail=detail,
            )
        )
    return rows
