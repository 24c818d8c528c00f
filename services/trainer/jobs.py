"""The training and promotion jobs, each run as a child process.

A child process keeps the trainer safe: a crash, an out-of-memory kill or a timeout in a job
ends that job only, and the service goes on answering. Both jobs print their report as JSON on
the last line of stdout (MLflow prints run links before it); a non-zero exit is a failure.

Each job runs in a ``python -m pipelines.worker`` process, which imports the jobs' code and then
reads on stdin which job to run. The trainer keeps ``warm`` of them started ahead (two: a run's
training and its promotion), so a retraining does not wait for torch, MLflow and Feast to import;
the pool is refilled once it is empty, after a run. Each process still runs one job only.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from bottega.errors import BottegaError
from bottega.stack.process import child_environment

log = logging.getLogger(__name__)

STDERR_TAIL = 2000
WORKER_MODULE = "pipelines.worker"

# The MLflow client retries a refused request for about four minutes by default (7 retries,
# backoff factor 2). A job that cannot reach the registry should fail in seconds: the trainer
# retries the whole attempt on its own policy, and that policy is the one to tune. Set in the
# environment, these variables win.
JOB_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


class JobFailed(BottegaError):
    """A training or promotion job failed; the message says how."""


class Jobs(Protocol):
    """What a retraining run calls: train a challenger, then judge it."""

    def train(self) -> dict[str, Any]:
        """Train and register a challenger; its report (with ``version``)."""

    def promote(self, version: str, *, champion_degraded: bool = False) -> dict[str, Any]:
        """Judge ``version`` against the champion; the decision (with ``promoted``).

        ``champion_degraded``: a quality alert asked for the run, so the challenger needs only
        not to be shown worse (pipelines/promote/policy.py).
        """

    def start(self) -> object:
        """Get ready for the first job (start what is kept warm)."""

    def cancel(self) -> None:
        """Kill the job in flight, if any; the trainer is stopping, and no job starts after."""


def format_duration(value: timedelta) -> str:
    """A duration as the pipelines' CLI reads it (``86400s``)."""
    return f"{int(value.total_seconds())}s"


class SubprocessJobs:
    """``python -m pipelines.train`` and ``python -m pipelines.promote`` as child processes."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        cwd: Path,
        window: timedelta,
        model: str = "mlp",
        holdout: str = "cards",
        epochs: int | None = None,
        timeout_s: float = 1800.0,
        python: str = sys.executable,
        warm: int = 0,
    ) -> None:
        self._env = {**JOB_MLFLOW_ENV, **child_environment(env)}
        self._cwd = cwd
        self._window = window
        self._model = model
        self._holdout = holdout
        self._epochs = epochs
        self._timeout_s = timeout_s
        self._python = python
        self._lock = threading.Lock()
        self._current: subprocess.Popen[str] | None = None
        self._warm = warm
        self._spares: list[subprocess.Popen[str]] = []
        self._closed = False

    def start(self) -> SubprocessJobs:
        """Start the warm workers (the service does, once it is up)."""
        with self._lock:
            self._refill()
        return self

    def train(self) -> dict[str, Any]:
        """Train on the recent window; the window ends at the newest transaction in the store."""
        args = ["--window", format_duration(self._window), "--model", self._model]
        args += ["--holdout", self._holdout]
        if self._epochs is not None:
            args += ["--epochs", str(self._epochs)]
        report = self._run("pipelines.train", args)
        if not report.get("version"):
            raise JobFailed("the training job registered no model version")
        return report

    def promote(self, version: str, *, champion_degraded: bool = False) -> dict[str, Any]:
        """Run the promotion policy on ``version``."""
        args = ["--version", version] + (["--champion-degraded"] if champion_degraded else [])
        return self._run("pipelines.promote", args)

    def _run(self, module: str, args: Sequence[str]) -> dict[str, Any]:
        request = json.dumps({"module": module, "args": list(args)}) + "\n"
        with self._lock:
            if self._closed:
                raise JobFailed("the trainer is stopping")
            proc, warm = self._take()
            self._current = proc
        log.info(
            "starting a job",
            extra={"job": module, "job_args": " ".join(args), "pid": proc.pid, "warm": warm},
        )
        try:
            # A worker that died before reading its job is no error here (communicate ignores
            # the broken pipe): its exit status and stderr say why.
            stdout, stderr = proc.communicate(request, timeout=self._timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise JobFailed(f"{module} ran past {self._timeout_s:g}s and was killed") from None
        finally:
            with self._lock:
                self._current = None
                if not self._spares:
                    self._refill()
        if proc.returncode != 0:
            raise JobFailed(f"{module} exited with {proc.returncode}: {last_error(stderr)}")
        return last_json(module, stdout)

    def _spawn(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self._python, "-m", WORKER_MODULE],
            env=self._env,
            cwd=self._cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def _take(self) -> tuple[subprocess.Popen[str], bool]:
        """A warm worker that is still alive, else one started now (cold); and which it was."""
        while self._spares:
            spare = self._spares.pop(0)
            if spare.poll() is None:
                return spare, True
            # A spare that died waiting (killed, out of memory): reap it, try the next.
            spare.communicate()
            log.warning("a warm job worker had died", extra={"returncode": spare.returncode})
        return self._spawn(), False

    def _refill(self) -> None:
        while not self._closed and len(self._spares) < self._warm:
            self._spares.append(self._spawn())

    def cancel(self) -> None:
        """Kill the job in flight, if any, and the warm workers (the trainer is stopping)."""
        with self._lock:
            self._closed = True
            spares, self._spares = self._spares, []
            if self._current is not None and self._current.poll() is None:
                self._current.kill()
        for spare in spares:
            spare.kill()
            spare.communicate()


def last_error(stderr: str) -> str:
    """The job's own ``error:`` line when it wrote one, else the tail of its stderr."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return "\n".join(lines)[-STDERR_TAIL:] or "no output"


def last_json(module: str, stdout: str) -> dict[str, Any]:
    """The JSON report on the last line of a job's stdout."""
    lines = stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        raise JobFailed(f"{module} printed no JSON report on its last line")
    return report
