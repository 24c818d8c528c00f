"""`bottega status` in Docker mode: each container's health, read through a fake Docker SDK
client (no engine here), and the secrets `up` hands compose."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bottega.stack.compose import (
    PROJECT_LABEL,
    SECRET_FILES,
    SERVICE_LABEL,
    ComposeProject,
    container_statuses,
    secrets_environment,
)
from bottega.stack.settings import StackSettings
from tests.docker_mode import ROOT


@dataclass
class FakeContainer:
    service: str
    state: dict[str, Any]
    project: str = "bottega"

    @property
    def labels(self) -> dict[str, str]:
        return {SERVICE_LABEL: self.service, PROJECT_LABEL: self.project}

    @property
    def attrs(self) -> dict[str, Any]:
        return {"State": self.state}


@dataclass
class FakeContainers:
    items: list[FakeContainer]
    filters: list[dict[str, Any]] = field(default_factory=list)

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[Any]:
        assert all, "stopped and exited containers count too"
        self.filters.append(filters or {})
        wanted = (filters or {}).get("label", "")
        return [c for c in self.items if f"{PROJECT_LABEL}={c.project}" == wanted]


@dataclass
class FakeClient:
    containers: FakeContainers
    closed: bool = False

    def close(self) -> None:
        self.closed = True


def running(health: str | None = "healthy") -> dict[str, Any]:
    return {"Status": "running", **({"Health": {"Status": health}} if health else {})}


def exited(code: int) -> dict[str, Any]:
    return {"Status": "exited", "ExitCode": code}


@pytest.fixture()
def settings(tmp_path: Path) -> StackSettings:
    return StackSettings(_env_file=None, project_root=ROOT, home=tmp_path)  # type: ignore[call-arg]


def test_status_reads_health_and_job_outcomes_from_the_engine(settings: StackSettings) -> None:
    client = FakeClient(
        FakeContainers(
            [
                FakeContainer("kafka", running()),
                FakeContainer("serving", running("starting")),
                FakeContainer("bootstrap", exited(0)),
                FakeContainer("kafka-init", running(None)),
                FakeContainer("feast-apply", exited(1)),
                FakeContainer("ingest", exited(137)),
                FakeContainer("monitor", running(), project="another-project"),
            ]
        )
    )
    rows = {row.name: row for row in container_statuses(settings, client_factory=lambda: client)}
    assert client.closed
    assert client.containers.filters == [{"label": f"{PROJECT_LABEL}=bottega"}]
    assert rows["kafka"].state == "healthy" and rows["kafka"].url == ""
    assert (rows["serving"].state, rows["serving"].detail) == ("starting", "running (starting)")
    # A job still running is starting, not healthy: it has not done its work yet.
    assert (rows["kafka-init"].state, rows["kafka-init"].detail) == ("starting", "running")
    assert rows["serving"].url == f"http://127.0.0.1:{settings.serving.port}"
    assert rows["bootstrap"].state == "completed"
    assert (rows["feast-apply"].state, rows["feast-apply"].detail) == ("stopped", "exited (1)")
    assert rows["ingest"].state == "stopped"  # a service that exited is down, whatever its code
    # Another project's container is not ours; ours is missing.
    assert (rows["monitor"].state, rows["monitor"].detail) == ("stopped", "no container")
    assert "cli" not in rows  # the tools profile is not started by `up`
    # Grafana's profile is listed only where its container runs.
    assert "grafana" not in rows
    client.containers.items.append(FakeContainer("grafana", running()))
    rows = {row.name: row for row in container_statuses(settings, client_factory=lambda: client)}
    assert rows["grafana"].url == f"http://127.0.0.1:{settings.grafana.port}"


def test_a_healthy_stack_is_all_healthy_or_completed(settings: StackSettings) -> None:
    from bottega.cli.stack import all_up
    from bottega.stack.compose import active_services, is_one_shot, load_compose

    declared = active_services(load_compose(settings.infra_dir / "compose.yaml"))
    items = [
        FakeContainer(name, exited(0) if is_one_shot(service) else running())
        for name, service in declared.items()
    ]
    rows = container_statuses(settings, client_factory=lambda: FakeClient(FakeContainers(items)))
    assert all_up(rows)
    items[0] = FakeContainer(items[0].service, running("unhealthy"))
    rows = container_statuses(settings, client_factory=lambda: FakeClient(FakeContainers(items)))
    assert not all_up(rows)


def test_importing_docker_mode_does_not_import_the_sdk() -> None:
    # A fresh interpreter: this one may have imported docker for another test already.
    code = "import sys, bottega.cli, bottega.stack.compose; sys.exit('docker' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "platform"), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr or "importing the CLI imported the Docker SDK"


def test_secrets_are_generated_once_owner_only_and_never_override_given_ones(
    settings: StackSettings,
) -> None:
    first = secrets_environment(settings, {})
    assert set(first) == set(SECRET_FILES)
    assert secrets_environment(settings, {}) == first  # reused, not regenerated
    for file_name in SECRET_FILES.values():
        mode = stat.S_IMODE(os.stat(settings.home / "secrets" / file_name).st_mode)
        assert mode == 0o600
    given = secrets_environment(settings, {"POSTGRES_PASSWORD": "from-dotenv"})
    assert "POSTGRES_PASSWORD" not in given  # compose reads it from .env itself


def test_compose_commands_name_the_project_files_and_env_file(
    settings: StackSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "bottega.env"
    env_file.write_text("BOTTEGA_SERVING__PORT=13000\n")
    monkeypatch.setenv("BOTTEGA_ENV_FILE", str(env_file))
    project = ComposeProject(settings, gpu=True)
    command = project.command(*project.up_args(["serving"]))
    assert command[:4] == ["docker", "compose", "--project-name", "bottega"]
    files = [command[i + 1] for i, arg in enumerate(command) if arg == "--file"]
    assert files == [str(ROOT / "infra/compose.yaml"), str(ROOT / "infra/compose.gpu.yaml")]
    assert command[command.index("--env-file") + 1] == str(env_file)
    up = ["up", "--no-build", "--detach", "--wait", "--wait-timeout", "1800", "serving"]
    assert command[-len(up) :] == up
