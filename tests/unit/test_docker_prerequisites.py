"""What Docker mode checks before compose runs: the CLI, the Compose v2 plugin, the engine and the
base image each get one line saying how to get them; the build CA bundle is staged or refused;
the Dockerfiles agree on their base."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bottega.errors import ConfigError, PrerequisiteMissing
from bottega.stack.compose import ComposeProject
from bottega.stack.images import (
    DOCKERFILES,
    STAGED_CA,
    Engine,
    base_image,
    require_base_image,
    stage_build_ca,
)
from bottega.stack.settings import StackOptions, StackSettings

ROOT = Path(__file__).resolve().parents[2]
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def fake_docker(
    tmp_path: Path,
    *,
    compose: bool,
    engine: bool,
    images: tuple[str, ...] = (),
    version: str = "5.6.0",
) -> str:
    """A `docker` that answers as told: the Compose plugin and its version, the engine, the
    images it holds, and `pull`, which always fails as an unreachable registry does."""
    script = tmp_path / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1 $2" = "compose version" ] && {{ echo {version}; exit {0 if compose else 1}; }}\n'
        f'[ "$1" = info ] && exit {0 if engine else 1}\n'
        'if [ "$1 $2" = "image inspect" ]; then\n'
        f'  for held in {" ".join(images) or "-"}; do [ "$3" = "$held" ] && exit 0; done; exit 1\n'
        "fi\n"
        'if [ "$1" = pull ]; then echo "Error response from daemon: no such host" >&2; exit 1; fi\n'
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def settings(tmp_path: Path, docker: str = "docker") -> StackSettings:
    return StackSettings(  # type: ignore[call-arg]
        _env_file=None, project_root=ROOT, home=tmp_path / "home", stack=StackOptions(docker=docker)
    )


def test_each_missing_piece_is_one_line_saying_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteMissing, match="is missing") as missing:
        ComposeProject(settings(tmp_path, str(tmp_path / "nowhere" / "docker"))).require()
    assert "docker-engine" in (missing.value.hint or "")
    no_plugin = fake_docker(tmp_path, compose=False, engine=True)
    with pytest.raises(PrerequisiteMissing, match="Compose v2") as plugin:
        ComposeProject(settings(tmp_path, no_plugin)).require()
    assert "make docker-engine" in (plugin.value.hint or "")
    old = fake_docker(tmp_path, compose=True, engine=True, version="v2.20.3")
    with pytest.raises(PrerequisiteMissing, match="2.20.3 is too old: Docker mode needs 2.24"):
        ComposeProject(settings(tmp_path, old)).require()
    # A plugin built from source without its version ("dev") is taken as new enough.
    dev = fake_docker(tmp_path, compose=True, engine=True, version="dev", images=())
    assert ComposeProject(settings(tmp_path, dev)).require() == dev
    no_engine = fake_docker(tmp_path, compose=True, engine=False)
    with pytest.raises(PrerequisiteMissing, match="no Docker engine answers") as engine:
        ComposeProject(settings(tmp_path, no_engine)).require()
    assert "dockerd" in (engine.value.hint or "")


def test_a_base_image_that_cannot_be_pulled_says_how_to_make_it(tmp_path: Path) -> None:
    docker = fake_docker(tmp_path, compose=True, engine=True)
    with pytest.raises(PrerequisiteMissing, match="cannot be pulled") as raised:
        require_base_image(Engine(docker), ROOT / "infra")
    assert "debian:bookworm-slim" in raised.value.message
    assert "no such host" in raised.value.message
    assert "make docker-base" in (raised.value.hint or "")
    held = fake_docker(tmp_path, compose=True, engine=True, images=("debian:bookworm-slim",))
    assert require_base_image(Engine(held), ROOT / "infra") == "debian:bookworm-slim"


def test_the_dockerfiles_must_agree_on_their_base(tmp_path: Path) -> None:
    assert base_image(ROOT / "infra") == "debian:bookworm-slim"
    for name in DOCKERFILES:
        copy = tmp_path / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text((ROOT / "infra" / name).read_text())
    (tmp_path / "redis" / "Dockerfile").write_text("ARG BASE_IMAGE=debian:trixie-slim\nFROM x\n")
    with pytest.raises(ConfigError, match="different bases"):
        base_image(tmp_path)


def test_the_build_ca_bundle_is_staged_once_and_a_bad_one_refused(tmp_path: Path) -> None:
    infra = tmp_path / "infra"
    assert stage_build_ca(None, infra) is None
    bundle = tmp_path / "proxy.pem"
    bundle.write_text(PEM)
    staged = stage_build_ca(bundle, infra)
    assert staged == infra / STAGED_CA and staged.read_text() == PEM
    mtime = staged.stat().st_mtime_ns
    assert stage_build_ca(bundle, infra) == staged and staged.stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match="not a file"):
        stage_build_ca(tmp_path / "missing.pem", infra)
    (tmp_path / "notes.txt").write_text("not a certificate")
    with pytest.raises(ConfigError, match="no PEM certificate"):
        stage_build_ca(tmp_path / "notes.txt", infra)


def test_up_without_an_engine_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    docker = fake_docker(tmp_path, compose=True, engine=False)
    env = {
        **os.environ,
        "BOTTEGA_HOME": str(tmp_path / "home"),
        "BOTTEGA_ENV_FILE": str(tmp_path / "none.env"),
        "BOTTEGA_STACK__DOCKER": docker,
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bottega.cli", "up", "--mode", "docker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert "error: no Docker engine answers" in done.stderr
    assert "hint:" in done.stderr
