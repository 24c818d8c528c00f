"""Docker mode for real: ``make up`` on the Docker engine, as a user runs it, and the stack it
brings up, shared by this folder's tests in file order and removed, volumes and all, after them.

``make test-docker`` runs this folder once the engine answers and the base image is there
(infra/docker/engine.sh, infra/base/debian.sh), as root (the fault tests signal a container's
process from the host). The stack is the users' compose file under a project name of its own,
on free host ports, with a settings file of its own (one serving worker). Everything else is
what `make up` does on a user's machine, images built from the checkout included.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bottega.settings import load_settings
from bottega.stack.compose import ComposeProject
from bottega.stack.settings import StackSettings
from tests.integration.conftest import free_ports

PROJECT = "bottega-test"
# The settings file the stack's containers and the CLI read (BOTTEGA_ENV_FILE), as a user's .env:
# one serving worker, for a 2-core machine that also runs the replay. The monitor, the alert
# rules, the retraining and the promotion policy are as shipped.
SETTINGS = {"BOTTEGA_SERVE__WORKERS": "1"}
# The published services, each on a free host port.
PUBLISHED = ("mlflow", "prometheus", "alertmanager", "serving", "trainer", "monitor", "ingest")
# `make up` builds every image on a first start: minutes, before bootstrap trains a champion.
UP_TIMEOUT_S = 2400


@dataclass
class DockerStack:
    """The running Docker-mode stack, and how to act on it as a user and as a test."""

    root: Path
    home: Path
    env: dict[str, str]
    settings: StackSettings
    up: subprocess.CompletedProcess[str]
    up_seconds: float

    def record(self, name: str, **values: Any) -> None:
        """Keep a test's figures; the run prints them at its end (and in ``figures.json``)."""
        FIGURES[name] = values
        (self.home / "figures.json").write_text(json.dumps(FIGURES, indent=2, default=str))

    def make(self, *args: str, timeout_s: float = 1800) -> subprocess.CompletedProcess[str]:
        """``make ARGS`` in the checkout, as a user types it."""
        return subprocess.run(
            ["make", "--no-print-directory", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def compose(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        """``docker compose ARGS`` on the project, with the secrets `make up` used."""
        project = ComposeProject(self.settings)
        return subprocess.run(
            project.command(*args),
            cwd=self.root,
            env={**project.environment(), **self.env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def containers(self, *, all_: bool = True) -> dict[str, dict[str, Any]]:
        """Each of the project's containers, by service: its `docker inspect` document."""
        listed = subprocess.run(
            ["docker", "ps", "--quiet", "--filter", f"label=com.docker.compose.project={PROJECT}"]
            + (["--all"] if all_ else []),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        if not listed:
            return {}
        inspected = subprocess.run(
            ["docker", "inspect", *listed], capture_output=True, text=True, timeout=60, check=True
        )
        return {
            c["Config"]["Labels"]["com.docker.compose.service"]: c
            for c in json.loads(inspected.stdout)
        }

    def inside(self, *args: str, out: Path, timeout_s: float = 600) -> subprocess.Popen[str]:
        """Start ``python -m tests.docker.inside ARGS`` in the stack's ``cli`` container, with
        ``tests/`` mounted read-only and ``out`` mounted writable at /out."""
        out.mkdir(parents=True, exist_ok=True)
        out.chmod(0o777)  # the container's user is not this one
        project = ComposeProject(self.settings)
        command = project.command(
            "run",
            "--rm",
            "--no-deps",
            "--volume",
            f"{self.root / 'tests'}:/app/tests:ro",
            "--volume",
            f"{out}:/out",
            "--entrypoint",
            "python",
            "cli",
            "-m",
            "tests.docker.inside",
            *args,
        )
        log = (out / "inside.log").open("a")
        return subprocess.Popen(
            command,
            cwd=self.root,
            env={**project.environment(), **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def serving(self, path: str, **kwargs: Any) -> httpx.Response:
        """A request to the model server, on its published port."""
        method = "POST" if "json" in kwargs else "GET"
        return httpx.request(method, f"{self.settings.serving.url}{path}", timeout=10, **kwargs)


FIGURES: dict[str, dict[str, Any]] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print every figure the Docker-mode tests recorded."""
    if FIGURES:
        terminalreporter.write_sep("-", "docker-mode figures")
        for name, values in FIGURES.items():
            terminalreporter.write_line(f"{name}: {json.dumps(values, default=str)}")


def docker_env(root: Path, home: Path) -> dict[str, str]:
    """The environment of `make` and `bottega` for the test's stack."""
    ports = dict(zip(PUBLISHED, free_ports(len(PUBLISHED)), strict=True))
    settings_file = home / "settings.env"
    settings_file.write_text("".join(f"{k}={v}\n" for k, v in SETTINGS.items()))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BOTTEGA_")},
        "MODE": "docker",
        "BOTTEGA_HOME": str(home),
        "BOTTEGA_ENV_FILE": str(settings_file),
        "BOTTEGA_STACK__COMPOSE_PROJECT": PROJECT,
        # Grafana's image is the one that is pulled: CI reaches no registry.
        "BOTTEGA_STACK__GRAFANA": "false",
        "COLUMNS": "200",
        **{f"BOTTEGA_{name.upper()}__PORT": str(port) for name, port in ports.items()},
    }
    # The builds trust what this machine's pip trusts: a TLS-intercepting proxy's CA, say.
    bundle = os.environ.get("BOTTEGA_STACK__BUILD_CA_BUNDLE") or os.environ.get("PIP_CERT")
    if bundle:
        env["BOTTEGA_STACK__BUILD_CA_BUNDLE"] = bundle
    return env


def stack_settings(env: dict[str, str]) -> StackSettings:
    """The settings the CLI reads from ``env``."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        return load_settings(StackSettings)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def remove_project(env: dict[str, str], root: Path) -> None:
    """Remove the test project's containers and volumes, whatever state they are in."""
    settings = stack_settings(env)
    project = ComposeProject(settings)
    project.profiles.extend(["grafana", "tools"])
    subprocess.run(
        project.command("down", "--volumes", "--remove-orphans", "--timeout", "20"),
        cwd=root,
        env={**project.environment(), **env},
        capture_output=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="package")
def docker_stack(
    project_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerStack]:
    """`make up` in Docker mode, once; the stack removed after the last test, failed or not."""
    home = tmp_path_factory.mktemp("docker-home")
    env = docker_env(project_root, home)
    remove_project(env, project_root)  # a previous run's leftovers
    started = time.monotonic()
    try:
        up = subprocess.run(
            ["make", "--no-print-directory", "up"],
            cwd=project_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT_S,
            check=False,
        )
        yield DockerStack(
            project_root, home, env, stack_settings(env), up, time.monotonic() - started
        )
    finally:
        remove_project(env, project_root)
