"""What Docker mode needs on the engine before compose builds: the OS base image, Grafana's image,
and the CA certificates the builds trust.

Every image of the stack is built by the project's Dockerfiles from one OS base,
``debian:bookworm-slim`` (the ``BASE_IMAGE`` argument's default in each Dockerfile). Only that base
and Grafana's image come from a registry. Where none answers, the base is made locally from
Debian's archive (``make docker-base``), and the stack starts without Grafana.
"""

from __future__ import annotations

import filecmp
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bottega.errors import ConfigError, PrerequisiteMissing

log = logging.getLogger(__name__)

# The Dockerfiles that build the stack's images; each names the base in `ARG BASE_IMAGE=...`.
DOCKERFILES = (
    "Dockerfile",
    "kafka/Dockerfile",
    "postgres/Dockerfile",
    "redis/Dockerfile",
    "prometheus/Dockerfile",
)
_BASE_ARG = re.compile(r"^ARG BASE_IMAGE=(\S+)\s*$", re.M)
# Where `bottega up` copies BOTTEGA_STACK__BUILD_CA_BUNDLE for the builds (infra/certs/README.md).
STAGED_CA = "certs/bottega-build-ca.pem"


def base_image(infra_dir: Path) -> str:
    """The OS base every Dockerfile builds from; a ConfigError when they disagree."""
    found = {}
    for name in DOCKERFILES:
        path = infra_dir / name
        match = _BASE_ARG.search(path.read_text())
        if match is None:
            raise ConfigError(f"{path} has no `ARG BASE_IMAGE=<image>` line")
        found[name] = match.group(1)
    if len(set(found.values())) != 1:
        raise ConfigError(f"the Dockerfiles build from different bases: {found}")
    return next(iter(found.values()))


@dataclass(frozen=True)
class Engine:
    """The Docker CLI, asked about images."""

    docker: str
    pull_timeout_s: float = 600.0

    def has_image(self, image: str) -> bool:
        """True when the engine holds ``image`` (False when it does not answer in time)."""
        try:
            done = subprocess.run(
                [self.docker, "image", "inspect", image],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def pull(self, image: str) -> str | None:
        """Pull ``image``; None when it worked, else the engine's last line of complaint."""
        try:
            done = subprocess.run(
                [self.docker, "pull", "--quiet", image],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.pull_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"no answer in {self.pull_timeout_s:.0f}s"
        except OSError as exc:
            return str(exc)
        if done.returncode == 0:
            return None
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"docker pull exited with {done.returncode}"

    def obtain(self, image: str) -> str | None:
        """Make sure the engine holds ``image``, pulling it if need be: None when it does, else
        why it cannot be had."""
        if self.has_image(image):
            return None
        why = self.pull(image)
        if why is not None:
            log.info("cannot pull image", extra={"image": image, "reason": why})
        return why


def require_base_image(engine: Engine, infra_dir: Path) -> str:
    """The OS base image, on the engine (pulled if need be); PrerequisiteMissing when it cannot
    be had, with how to make it."""
    image = base_image(infra_dir)
    why = engine.obtain(image)
    if why is not None:
        raise PrerequisiteMissing(
            f"the base image {image} is not on this Docker engine and cannot be pulled ({why})",
            hint="build it from Debian's archive: make docker-base (root, with debootstrap)",
        )
    return image


def stage_build_ca(bundle: Path | None, infra_dir: Path) -> Path | None:
    """Copy the CA bundle that builds must trust into ``infra/certs/``, where the Dockerfiles read
    it; None when no bundle is set. A missing or non-PEM file is a ConfigError."""
    if bundle is None:
        return None
    path = bundle.expanduser()
    if not path.is_file():
        raise ConfigError(
            f"BOTTEGA_STACK__BUILD_CA_BUNDLE names {path}, which is not a file",
            hint="name a PEM file of CA certificates, or unset it",
        )
    if "-----BEGIN CERTIFICATE-----" not in path.read_text(errors="replace"):
        raise ConfigError(
            f"BOTTEGA_STACK__BUILD_CA_BUNDLE names {path}, which holds no PEM certificate",
            hint="name a PEM file of CA certificates (-----BEGIN CERTIFICATE-----), or unset it",
        )
    staged = infra_dir / STAGED_CA
    if not (staged.exists() and filecmp.cmp(path, staged, shallow=False)):
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, staged)
    return staged
