"""Choosing between Docker mode and local mode."""

from __future__ import annotations

import shutil
import subprocess
from typing import Literal

Mode = Literal["local", "docker"]


def answers(command: list[str], timeout_s: float = 30.0) -> bool:
    """True when ``command`` exits 0 within the timeout (its output discarded)."""
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def docker_available(timeout_s: float = 10.0) -> bool:
    """True when ``docker info`` succeeds, i.e. a Docker engine answers."""
    docker = shutil.which("docker")
    return docker is not None and answers([docker, "info"], timeout_s)


def choose_mode(requested: str) -> Mode:
    """``local`` or ``docker``: the requested mode, or for ``auto`` whichever the machine has."""
    if requested == "local":
        return "local"
    if requested == "docker":
        return "docker"
    return "docker" if docker_available() else "local"
