"""The declaration of one supervised service."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bottega.errors import PrerequisiteMissing


@dataclass(frozen=True)
class Prerequisite:
    """Something a service needs on the machine, and the one line that says how to get it."""

    name: str
    install_hint: str
    executables: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()
    # Given what was found, says why it is not good enough (too old, say), or None.
    check: Callable[[str], str | None] | None = None

    def locate(self) -> str | None:
        """Where the prerequisite is, whatever its version, or None."""
        for exe in self.executables:
            found = shutil.which(exe)
            if found:
                return found
        for path in self.paths:
            if path.exists():
                return str(path)
        return None

    def problem(self) -> str | None:
        """Why the prerequisite cannot be used, or None when it can."""
        found = self.locate()
        if found is None:
            return f"{self.name} is missing"
        return self.check(found) if self.check else None

    def require(self) -> str:
        """Where the prerequisite is; raises :class:`PrerequisiteMissing` when it is unusable."""
        problem = self.problem()
        if problem is not None:
            raise PrerequisiteMissing(problem, hint=self.install_hint)
        return self.locate() or ""


@dataclass(frozen=True)
class Port:
    """A port that a service binds, with a label for messages (``kafka``, ``kafka-controller``)."""

    label: str
    port: int


HealthCheck = Callable[[], bool]
Hook = Callable[[], None]
Detail = Callable[[], str]


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service of the local stack.

    ``command`` and ``prepare`` are called only when the service is about to start, so building a
    spec has no side effects. ``health`` must return True only when the service answers a real
    request (a Kafka metadata request, an HTTP readiness endpoint), and must never raise.
    """

    name: str
    command: Callable[[], Sequence[str]]
    ports: tuple[Port, ...]
    health: HealthCheck
    url: str
    depends_on: tuple[str, ...] = ()
    prerequisites: tuple[Prerequisite, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    prepare: Hook | None = None
    after_start: Hook | None = None
    # One line for ``bottega status`` (the model a server holds, say); must never raise.
    detail: Detail | None = None
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 20.0
    description: str = ""
