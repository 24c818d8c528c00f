"""Supervised processes: start one detached, record it in a pid file, stop exactly it.

A pid file holds the pid and the process's start time. A pid alone can be reused by the kernel
after our process dies; the pair cannot, so ``down`` never signals a stranger.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds."""

    pid: int
    create_time: float
    command: list[str]
    log_path: str

    def process(self) -> psutil.Process | None:
        """The live process this record names, or None when it has exited or the pid was reused."""
        try:
            proc = psutil.Process(self.pid)
            # psutil rounds create_time; a reused pid starts at a different time.
            if abs(proc.create_time() - self.create_time) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return proc


class PidFile:
    """The pid file of one service."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> PidRecord | None:
        """The record, or None when there is no readable pid file."""
        try:
            data = json.loads(self.path.read_text())
            return PidRecord(
                pid=int(data["pid"]),
                create_time=float(data["create_time"]),
                command=list(data["command"]),
                log_path=str(data["log_path"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, record: PidRecord) -> None:
        """Write atomically, so a reader never sees half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(self.path)

    def remove(self) -> None:
        """Delete the pid file if it exists."""
        self.path.unlink(missing_ok=True)

    def live(self) -> psutil.Process | None:
        """The live process this pid file names, or None."""
        record = self.read()
        return record.process() if record else None


# Set by importing Feast (a temporary folder of its own); a child that inherited them would keep
# its Prometheus metrics in that folder, shared with every other child, and never reset them.
INHERITED_ENV_EXCLUDED = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a child, less what must not leak, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_ENV_EXCLUDED}
    env.update(extra or {})
    return env


def spawn(
    command: Sequence[str], *, log_path: Path, env: Mapping[str, str], cwd: Path
) -> PidRecord:
    """Start ``command`` in a session of its own, with stdout and stderr appended to ``log_path``.

    A session of its own means a process group of its own: ``terminate`` can then stop the
    process and every child it forked (MLflow's workers, say) and nothing else.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_environment(env),
            cwd=cwd,
            start_new_session=True,
        )
    create_time = psutil.Process(proc.pid).create_time()
    return PidRecord(proc.pid, create_time, list(command), str(log_path))


def terminate(record: PidRecord, *, timeout_s: float) -> bool:
    """Stop the process a record names, and its process group; True when something was stopped.

    SIGTERM first, so that Kafka and Prometheus shut down cleanly; SIGKILL after ``timeout_s``.
    """
    proc = record.process()
    if proc is None:
        return False
    family = [proc, *_children(proc)]
    _signal_group(record.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=timeout_s)
    if alive:
        log.warning("escalating to SIGKILL", extra={"pid": record.pid, "left": len(alive)})
        _signal_group(record.pid, signal.SIGKILL)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
    _reap(record.pid)
    return True


def leftovers(record: PidRecord) -> list[psutil.Process]:
    """The processes of a record's process group still alive after its leader died.

    A service killed with SIGKILL can leave children behind (MLflow's uvicorn, a trainer's job),
    still holding its port. They are in the group the record's process led, and none is older
    than the record: a stranger's group with a reused id is not touched.
    """
    try:
        holder = psutil.Process(record.pid)
        if abs(holder.create_time() - record.create_time) > 1.0:
            # The id names another process now: the recorded group ended with its last member
            # (a group id is not reused while the group lives), and this group is a stranger's.
            return []
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    found = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if proc.pid == os.getpid() or os.getpgid(proc.pid) != record.pid:
                continue
            created = proc.info["create_time"]
            if created is None or created + 1.0 < record.create_time:
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status when we are the parent, so no zombie lingers in tests."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)


def exit_with_parent(*, interval_s: float = 0.5, grace_s: float = 8.0) -> threading.Thread:
    """Stop this process as soon as its parent is gone; the watching thread.

    It is told to stop (SIGTERM), so that its shutdown hooks run (the model server flushes its
    prediction log: a prediction whose answer went out is not lost with the worker), and killed
    (SIGKILL) if it has not exited ``grace_s`` later.

    A server whose workers are processes in sessions of their own (BentoML's) leaves them
    behind when it is killed with SIGKILL: they keep its port, so it cannot start again, and
    ``bottega down`` no longer knows them (children in the service's own process group are the
    runner's to stop: see :func:`leftovers`). Each worker calls this at start. A thread that
    watches the parent pid, rather than the kernel's parent-death signal: that signal is tied to
    the thread that asked for it, and BentoML builds a service on a pool thread that ends.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        log.warning("parent process gone; exiting", extra={"parent": parent})
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def spawn_and_wait(command: Sequence[str], *, log_path: Path, cwd: Path, timeout_s: float) -> None:
    """Run a one-shot command (a storage format, say) to completion; raise if it fails."""
    from bottega.errors import ServiceStartError

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        try:
            done = subprocess.run(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceStartError(
                f"{command[0]} did not finish within {timeout_s:.0f}s", hint=f"see {log_path}"
            ) from exc
    if done.returncode != 0:
        raise ServiceStartError(
            f"{' '.join(command[-4:])} exited with {done.returncode}", hint=f"see {log_path}"
        )
