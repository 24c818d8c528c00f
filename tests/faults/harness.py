"""What the fault tests share: the stack, a replay that records what the broker acknowledged,
killing and restarting a service, and counting event_ids in topics and in the feature store."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

from bottega.auth import ensure_trainer_token
from bottega.registry import CHAMPION, MODEL_NAMES, MlflowRegistry
from bottega.replay.player import ReplayOptions
from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings
from bottega.usecases.fraud.store import FraudFeatureStore
from tests.faults.counting import (
    Replay,
    group_lag,
    metric_sum,
    read_topic,
    stored_counts,
)
from tests.waiting import wait_for

__all__ = [
    "FaultStack",
    "Figures",
    "Replay",
    "Trainer",
    "group_lag",
    "metric_sum",
    "read_topic",
    "stored_counts",
    "wait_for",
    "wait_until",
]


class Figures:
    """The figures the tests measured, by test, kept in a JSON file as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = {}

    def record(self, name: str, **values: Any) -> None:
        """Add (or replace) the figures of ``name`` and rewrite the file."""
        self.data[name] = values
        self.path.write_text(json.dumps(self.data, indent=2, default=str))


@dataclass
class FaultStack:
    """The private stack, and the simulated clock the tests' replays share."""

    settings: StackSettings
    runner: LocalStack
    env: dict[str, str]
    project_root: Path
    figures: Figures = field(init=False)
    _store: FraudFeatureStore | None = field(default=None, init=False)
    _played_until: datetime | None = field(default=None, init=False)
    _killed: dict[str, list[psutil.Process]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.figures = Figures(self.settings.home / "fault-figures.json")

    @property
    def store(self) -> FraudFeatureStore:
        """The stack's feature store, read from this process."""
        if self._store is None:
            self._store = FraudFeatureStore(self.settings)
        return self._store

    @contextmanager
    def replay(
        self,
        duration: timedelta,
        *,
        speed: float = 60.0,
        concurrency: int = 4,
        scenario: str = "baseline",
    ) -> Iterator[Replay]:
        """A replay of ``duration`` (simulated), after everything played so far."""
        newest = self.store.newest_transaction_time()
        assert newest is not None, "the store holds no history"
        begin = max(newest, self._played_until or newest) + timedelta(minutes=1)
        replay = Replay(
            self.settings,
            self.project_root / "scenarios" / f"{scenario}.yaml",
            begin,
            duration,
            ReplayOptions(speed=speed, concurrency=concurrency, timeout_s=5.0),
        )
        self._played_until = replay.stats.sim_end
        try:
            yield replay.start()
        finally:
            replay.close()

    def kill(self, name: str, *, whole: bool = False) -> float:
        """SIGKILL the service's process, the one its pid file names, as the kernel's
        out-of-memory killer would; with ``whole``, every process it started as well, as a
        container's kill would. The time it was killed (``time.time()``)."""
        record = self.runner.pid_file(name).read()
        proc = record.process() if record else None
        assert proc is not None, f"{name} is not running"
        family = [proc, *proc.children(recursive=True)]
        self._killed[name] = family
        killed_at = time.time()
        for member in family if whole else [proc]:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        psutil.wait_procs(family if whole else [proc], timeout=30)
        assert self.runner.pid_file(name).live() is None, f"{name} survived SIGKILL"
        return killed_at

    def wait_gone(self, name: str, *, timeout_s: float = 15) -> float:
        """Wait until every process of the killed service has exited by itself; the seconds
        that took. Fails if one is still running at ``timeout_s``."""
        started = time.monotonic()
        procs = self._killed.get(name, [])
        wait_for(
            lambda: not any(running(p) for p in procs),
            timeout_s=timeout_s,
            what=f"every process of the killed {name} to exit",
            every_s=0.1,
        )
        return time.monotonic() - started

    def restart(self, name: str) -> float:
        """``bottega up`` for one killed service: start it again and wait until it is healthy;
        the seconds that took. Nothing of the killed process may be left running after."""
        started = time.monotonic()
        report = self.runner.up([name])
        assert report.started == [name], report
        left = [p.pid for p in self._killed.pop(name, []) if running(p)]
        assert left == [], f"{name} left processes behind: {left}"
        return time.monotonic() - started


def running(proc: psutil.Process) -> bool:
    """True while ``proc`` runs: a zombie (exited, its status not yet collected by a parent
    that is not ours to make collect it) has stopped."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(
    condition: Callable[[], object], *, timeout_s: float, what: str, every_s: float = 2.0
) -> object:
    """``wait_for`` for conditions that cost a round of requests: asked every ``every_s``."""
    return wait_for(condition, timeout_s=timeout_s, what=what, every_s=every_s)


class Trainer:
    """The trainer's HTTP API, with the stack's token."""

    def __init__(self, settings: StackSettings) -> None:
        self.url = settings.trainer.url
        token = ensure_trainer_token(settings).read_text().strip()
        self.headers = {"Authorization": f"Bearer {token}"}

    def retrain(self, reason: str) -> str:
        """Ask for a manual run; its id."""
        answer = httpx.post(
            f"{self.url}/retrain", json={"reason": reason}, headers=self.headers, timeout=10
        )
        assert answer.status_code == 202, answer.text
        run: str = answer.json()["run"]
        return run

    def alert(self, name: str) -> str:
        """Deliver a firing retrain alert as Alertmanager does; the run's id."""
        notification = {
            "version": "4",
            "status": "firing",
            "groupKey": f"faults:{name}",
            "alerts": [{"status": "firing", "labels": {"alertname": name, "retrain": "true"}}],
        }
        answer = httpx.post(
            f"{self.url}/webhook", json=notification, headers=self.headers, timeout=10
        )
        assert answer.status_code == 202, answer.text
        run: str = answer.json()["run"]
        return run

    def run(self, run_id: str) -> dict[str, Any]:
        """The run's record."""
        body: dict[str, Any] = httpx.get(f"{self.url}/runs/{run_id}", timeout=10).json()
        return body


def champion_and_versions(settings: StackSettings) -> tuple[str | None, set[str]]:
    """The champion's version and every registered version of the fraud model."""
    registry = MlflowRegistry(settings.mlflow_tracking_uri)
    champion = registry.by_alias(MODEL_NAMES["fraud"], CHAMPION)
    versions = {v.version for v in registry.versions(MODEL_NAMES["fraud"])}
    return (champion.version if champion else None), versions
