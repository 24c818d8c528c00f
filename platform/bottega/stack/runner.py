"""The local stack runner: start in dependency order, wait on health, stop what it started."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from bottega.errors import ConfigError, PortInUse, ServiceStartError
from bottega.stack.health import port_free
from bottega.stack.process import PidFile, leftovers, spawn, terminate
from bottega.stack.spec import ServiceSpec

log = logging.getLogger(__name__)

# "completed": a one-shot job (Docker mode) that ran to completion.
# "starting": a container whose health check has not passed yet, or a one-shot job still running.
State = Literal["healthy", "starting", "unhealthy", "stopped", "completed"]


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``bottega status``."""

    name: str
    state: State
    url: str
    pid: int | None
    description: str = ""
    detail: str = ""


@dataclass(frozen=True)
class UpReport:
    """What ``up`` did: which services it started and which were already running."""

    started: list[str]
    already_running: list[str]
    statuses: list[ServiceStatus]


def dependency_order(specs: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """Specs sorted so that each comes after everything it depends on (stable otherwise)."""
    by_name = {spec.name: spec for spec in specs}
    if len(by_name) != len(specs):
        raise ConfigError("two services share a name")
    for spec in specs:
        for dep in spec.depends_on:
            if dep not in by_name:
                raise ConfigError(f"{spec.name} depends on {dep!r}, which is not a service")
    ordered: list[ServiceSpec] = []
    visiting: list[str] = []
    done: set[str] = set()

    def visit(spec: ServiceSpec) -> None:
        if spec.name in done:
            return
        if spec.name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(spec.name) :], spec.name])
            raise ConfigError(f"services depend on each other in a cycle: {cycle}")
        visiting.append(spec.name)
        for dep in spec.depends_on:
            visit(by_name[dep])
        visiting.pop()
        done.add(spec.name)
        ordered.append(spec)

    for spec in specs:
        visit(spec)
    return ordered


class LocalStack:
    """Supervises a set of services as local processes, with state under ``home``."""

    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        *,
        home: Path,
        bind_host: str,
        cwd: Path,
        poll_interval_s: float = 0.25,
    ) -> None:
        self.specs = dependency_order(specs)
        self.home = home
        self.bind_host = bind_host
        self.cwd = cwd
        self.poll_interval_s = poll_interval_s
        self._by_name = {spec.name: spec for spec in self.specs}

    # -- paths ---------------------------------------------------------------------------

    def pid_file(self, name: str) -> PidFile:
        """The pid file of service ``name``."""
        return PidFile(self.home / "run" / f"{name}.pid")

    def log_path(self, name: str) -> Path:
        """The log file of service ``name``."""
        return self.home / "logs" / f"{name}.log"

    def select(self, names: Iterable[str] | None) -> list[ServiceSpec]:
        """The named services plus everything they depend on, in dependency order."""
        if names is None:
            return list(self.specs)
        names = list(names)
        self._check_known(names)
        wanted: set[str] = set()

        def add(name: str) -> None:
            if name not in wanted:
                wanted.add(name)
                for dep in self._by_name[name].depends_on:
                    add(dep)

        for name in names:
            add(name)
        return [spec for spec in self.specs if spec.name in wanted]

    def _check_known(self, names: Iterable[str]) -> None:
        for name in names:
            if name not in self._by_name:
                known = ", ".join(self._by_name)
                raise ConfigError(f"unknown service {name!r}", hint=f"known services: {known}")

    # -- up ------------------------------------------------------------------------------

    def up(self, names: Iterable[str] | None = None) -> UpReport:
        """Start every selected service that is not running, in dependency order.

        A service already running is left alone, so ``up`` on a running stack does nothing but
        report. Before anything starts, every prerequisite is checked and every port that a
        service to start must bind is checked free. If a service fails to become healthy, every
        service this call started is stopped again: no half stack is left behind.
        """
        selected = self.select(names)
        running = {spec.name for spec in selected if self.pid_file(spec.name).live()}
        to_start = [spec for spec in selected if spec.name not in running]
        for spec in to_start:
            self._clear_stale(spec)
        self._check_prerequisites(to_start)
        self._check_ports(to_start)

        started: list[ServiceSpec] = []
        ready: set[str] = set()

        def make_ready(spec: ServiceSpec) -> None:
            # Healthy, and its after-start hook done (Kafka's topics created, say), before
            # anything that depends on it starts.
            if spec.name in ready:
                return
            self._wait_healthy(spec)
            if spec in started and spec.after_start:
                spec.after_start()
            ready.add(spec.name)

        try:
            for spec in to_start:
                for dep in spec.depends_on:
                    make_ready(self._by_name[dep])
                self._start(spec)
                started.append(spec)
            for spec in selected:
                make_ready(spec)
        except BaseException:
            log.error(
                "start failed; stopping what this call started",
                extra={"started": [s.name for s in started]},
            )
            for spec in reversed(started):
                self._stop(spec)
            raise
        return UpReport(
            started=[s.name for s in started],
            already_running=[s.name for s in selected if s.name in running],
            statuses=self.status(names),
        )

    def _clear_stale(self, spec: ServiceSpec) -> None:
        """Remove the pid file of a service whose process is gone, and stop what it left behind
        (a child still holding its port after the service was killed with SIGKILL)."""
        pid_file = self.pid_file(spec.name)
        record = pid_file.read()
        pid_file.remove()
        if record is None:
            return
        left = leftovers(record)
        if left:
            log.warning(
                "stopping what a dead service left behind",
                extra={"service": spec.name, "pids": [p.pid for p in left]},
            )
            for proc in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            psutil.wait_procs(left, timeout=10)
        # Children outside its group (BentoML's workers) exit on their own once they see their
        # parent gone: give them the service's stop timeout to let go of its ports.
        deadline = time.monotonic() + spec.stop_timeout_s
        while time.monotonic() < deadline and not all(
            port_free(self.bind_host, port.port) for port in spec.ports
        ):
            time.sleep(self.poll_interval_s)

    def _check_prerequisites(self, specs: Sequence[ServiceSpec]) -> None:
        for spec in specs:
            for prerequisite in spec.prerequisites:
                prerequisite.require()

    def _check_ports(self, specs: Sequence[ServiceSpec]) -> None:
        seen: dict[int, str] = {}
        for spec in specs:
            for port in spec.ports:
                if port.port in seen:
                    raise ConfigError(
                        f"{port.label} and {seen[port.port]} are both set to port {port.port}"
                    )
                seen[port.port] = port.label
                if not port_free(self.bind_host, port.port):
                    raise PortInUse(port.label, port.port, self.bind_host)

    def _start(self, spec: ServiceSpec) -> None:
        if spec.prepare:
            spec.prepare()
        command = list(spec.command())
        log_path = self.log_path(spec.name)
        record = spawn(command, log_path=log_path, env=dict(spec.env), cwd=self.cwd)
        self.pid_file(spec.name).write(record)
        log.info("started", extra={"service": spec.name, "pid": record.pid})

    def _wait_healthy(self, spec: ServiceSpec) -> None:
        deadline = time.monotonic() + spec.startup_timeout_s
        pid_file = self.pid_file(spec.name)
        while True:
            if pid_file.live() is None:
                raise ServiceStartError(
                    f"{spec.name} exited while starting",
                    hint=f"its log ends: {self._log_tail(spec.name)}",
                )
            if spec.health():
                return
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"{spec.name} did not become healthy within {spec.startup_timeout_s:.0f}s",
                    hint=f"see {self.log_path(spec.name)}",
                )
            time.sleep(self.poll_interval_s)

    def _log_tail(self, name: str, lines: int = 5) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    # -- down ----------------------------------------------------------------------------

    def down(self, names: Iterable[str] | None = None) -> list[str]:
        """Stop the selected services in reverse dependency order; return those stopped."""
        if names is None:
            selected = self.specs
        else:
            wanted = set(names)
            self._check_known(wanted)
            selected = [spec for spec in self.specs if spec.name in wanted]
        stopped = []
        for spec in reversed(selected):
            if self._stop(spec):
                stopped.append(spec.name)
        return stopped

    def _stop(self, spec: ServiceSpec) -> bool:
        pid_file = self.pid_file(spec.name)
        record = pid_file.read()
        stopped = terminate(record, timeout_s=spec.stop_timeout_s) if record else False
        pid_file.remove()
        if stopped:
            log.info("stopped", extra={"service": spec.name, "pid": record.pid if record else None})
        return stopped

    # -- status --------------------------------------------------------------------------

    def status(self, names: Iterable[str] | None = None) -> list[ServiceStatus]:
        """The health of each selected service, asked live."""
        rows = []
        for spec in self.select(names):
            proc = self.pid_file(spec.name).live()
            state: State
            if proc is None:
                state = "stopped"
            elif spec.health():
                state = "healthy"
            else:
                state = "unhealthy"
            rows.append(
                ServiceStatus(
                    name=spec.name,
                    state=state,
                    url=spec.url,
                    pid=proc.pid if proc else None,
                    description=spec.description,
                    detail=spec.detail() if spec.detail and proc is not None else "",
                )
            )
        return rows
