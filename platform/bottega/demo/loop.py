"""``bottega demo``: a champion, a calm replay, a drifting replay, and the loop closing.

1. A champion: when the registry has none, ``bottega bootstrap`` runs (backfill, train, promote).
2. The calm replay (``baseline``): the false-alarm check; no retraining may start during it.
3. The drifting replay (``fraud-ring``): drift, alert, retraining, promotion and swap happen
   while it plays, so its last part is scored by the new champion.
4. The wait for a retraining that is still running, then the timeline and the report.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bottega.demo.report import write_report
from bottega.demo.timeline import (
    Timeline,
    build_timeline,
    firing_alerts,
    monitor_windows,
    trainer_runs,
)
from bottega.errors import BottegaError
from bottega.registry import CHAMPION, MODEL_NAMES, MlflowRegistry
from bottega.replay.player import ReplayOptions, ReplayStats
from bottega.replay.run import replay_scenario
from bottega.settings import BottegaSettings
from bottega.stack.process import child_environment

log = logging.getLogger(__name__)


class DemoError(BottegaError):
    """The demo cannot run, or the loop did not close."""


@dataclass(frozen=True)
class DemoOptions:
    """What the demo plays, and how fast."""

    calm: Path = Path("scenarios/baseline.yaml")
    drifting: Path = Path("scenarios/fraud-ring.yaml")
    drift_phase: str = "ring"
    duration: timedelta = timedelta(hours=36)  # of each replay, simulated
    speed: float = 600.0
    concurrency: int = 8
    # Eight days, so that 7-day card features have settled by the holdout, where the drift
    # reference comes from; a shorter history makes a calm replay look drifted.
    bootstrap_days: float = 8.0
    bootstrap_window: str = "4d"
    loop_timeout_s: float = 600.0  # for a retraining still running after the replays
    # When the new champion was promoted too late to answer enough of the drifted regime (a
    # slow machine), the drifting scenario plays on for this long: one more cycle of it.
    continuation: timedelta = timedelta(hours=12)
    min_frauds_answered: int = 20
    monitor_window: timedelta = timedelta(hours=6)  # the monitor's default window


@dataclass
class DemoResult:
    """The replays, the timeline and the report."""

    calm: ReplayStats
    drifting: ReplayStats
    timeline: Timeline
    continued: ReplayStats | None
    champion_before: str
    champion_after: str | None
    false_alarm_runs: list[dict[str, Any]]
    figures: dict[str, float] = field(default_factory=dict)
    report: Path | None = None

    def to_dict(self) -> dict[str, object]:
        """The result as plain values (``bottega demo --json``)."""
        return {
            "calm": self.calm.to_dict(),
            "drifting": self.drifting.to_dict(),
            "continued": self.continued.to_dict() if self.continued else None,
            "moments": [m.to_dict() for m in self.timeline.moments],
            "alerts": [a.__dict__ for a in self.timeline.alerts],
            "runs": self.timeline.runs,
            "quality": {v: q.to_dict() for v, q in self.timeline.quality.items()},
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "new_version": self.timeline.new_version,
            "false_alarm_runs": self.false_alarm_runs,
            "figures": self.figures,
            "report": str(self.report) if self.report else None,
            "loop_closed": self.loop_closed,
        }

    @property
    def loop_closed(self) -> bool:
        """A new champion answered on the drifted regime."""
        return self.timeline.moment("new champion answering") is not None


def champion_version(settings: BottegaSettings) -> str | None:
    """The champion's version, or None."""
    champion = MlflowRegistry(settings.mlflow_tracking_uri).by_alias(MODEL_NAMES["fraud"], CHAMPION)
    return champion.version if champion is not None else None


def check_stack(settings: BottegaSettings) -> None:
    """Every service the demo talks to answers; else one line that says what to do."""
    for name, url in (
        ("serving", f"{settings.serving.url}/livez"),
        ("trainer", f"{settings.trainer.url}/livez"),
        ("monitor", f"{settings.monitor.url}/livez"),
        ("prometheus", f"{settings.prometheus.url}/-/ready"),
    ):
        try:
            ok = httpx.get(url, timeout=5.0).status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            raise DemoError(f"{name} is not ready at {url}", hint="start the stack: make up")


def wait_until_serving(settings: BottegaSettings, timeout_s: float = 180.0) -> None:
    """Wait for the model server to hold a champion (its readiness)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if httpx.get(f"{settings.serving.url}/readyz", timeout=5.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2.0)
    raise DemoError(
        f"the model server at {settings.serving.url} did not load the champion in {timeout_s:.0f}s",
        hint="bottega logs serving",
    )


def bootstrap(settings: BottegaSettings, options: DemoOptions, console: Console) -> str:
    """The champion's version, bootstrapping one first when there is none."""
    version = champion_version(settings)
    if version is not None:
        console.print(f"champion: v{version}")
        return version
    console.print("no champion yet: bootstrapping (backfill, train, promote)")
    command = [
        sys.executable,
        "-m",
        "bottega.cli",
        "bootstrap",
        "--days",
        str(options.bootstrap_days),
        "--window",
        options.bootstrap_window,
    ]
    if subprocess.run(command, env=child_environment(), check=False).returncode:
        raise DemoError("bootstrap failed", hint="see its output above; then: make demo")
    version = champion_version(settings)
    if version is None:
        raise DemoError("bootstrap ended without a champion")
    return version


def wait_for_loop(
    settings: BottegaSettings, since: float, timeout_s: float, console: Console
) -> list[dict[str, Any]]:
    """Wait while a retraining that started after ``since`` is still running."""
    deadline = time.time() + timeout_s
    while True:
        runs = [r for r in trainer_runs(settings.trainer.url) if _after(r, since)]
        active = [r for r in runs if r.get("status") in ("queued", "running", "retrying")]
        if not active or time.time() > deadline:
            return runs
        console.print(f"waiting for retraining run {active[0].get('id')} to finish")
        time.sleep(5.0)


def _frauds_answered(stats: ReplayStats, version: str, phase: str) -> int:
    return sum(
        s.is_fraud and s.labelled for s in stats.served if s.version == version and s.phase == phase
    )


def _after(run: dict[str, Any], since: float) -> bool:
    received = run.get("received_at")
    return bool(received) and datetime.fromisoformat(str(received)).timestamp() >= since


def run_demo(
    settings: BottegaSettings,
    options: DemoOptions,
    *,
    stop: threading.Event,
    console: Console,
    reports_dir: Path,
) -> DemoResult:
    """The whole demo; see the module's docstring."""
    check_stack(settings)
    before = bootstrap(settings, options, console)
    wait_until_serving(settings)
    replay = ReplayOptions(speed=options.speed, concurrency=options.concurrency)
    console.rule(f"calm: {options.calm}")
    calm = replay_scenario(
        settings, options.calm, replay, stop=stop, console=console, duration=options.duration
    )
    if stop.is_set():
        raise KeyboardInterrupt
    false_alarms = [r for r in trainer_runs(settings.trainer.url) if _after(r, calm.wall_started)]
    if false_alarms:
        console.print(f"[red]the calm replay started {len(false_alarms)} retraining run(s)[/]")

    def play_drifting(title: str, duration: timedelta) -> ReplayStats:
        console.rule(title)
        stats = replay_scenario(
            settings,
            options.drifting,
            ReplayOptions(speed=options.speed, concurrency=options.concurrency, flush_labels=True),
            stop=stop,
            console=console,
            duration=duration,
        )
        if stop.is_set():
            raise KeyboardInterrupt
        return stats

    drifting = play_drifting(f"drifting: {options.drifting}", options.duration)
    runs = wait_for_loop(settings, drifting.wall_started, options.loop_timeout_s, console)
    continued = None
    after = champion_version(settings)
    if (
        after not in (None, before)
        and _frauds_answered(drifting, after, options.drift_phase) < options.min_frauds_answered
    ):
        continued = play_drifting(
            f"drifting, continued: v{after} on the drifted regime", options.continuation
        )
        runs = wait_for_loop(settings, drifting.wall_started, options.loop_timeout_s, console)
    played = drifting.followed_by(continued) if continued is not None else drifting
    timeline = build_timeline(
        played,
        drift_phase=options.drift_phase,
        old_version=before,
        alerts=firing_alerts(settings.prometheus.url, calm.wall_started, time.time()),
        runs=runs,
        windows=monitor_windows(settings.monitor.url),
    )
    result = DemoResult(
        calm=calm,
        drifting=drifting,
        timeline=timeline,
        continued=continued,
        champion_before=before,
        champion_after=champion_version(settings),
        false_alarm_runs=false_alarms,
        figures=timeline.figures(options.monitor_window),
    )
    replays = [calm, drifting] if continued is None else [calm, drifting, continued]
    result.report = write_report(reports_dir, timeline, replays, result.figures)
    return result
