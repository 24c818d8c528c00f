"""Each drifting scenario raises the alert that names its kind of drift, on the real stack.

A replay plays against the private stack (after the loop's tests, so a champion serves) while
the test watches Prometheus, and stops as soon as the alert fires. Only a firing that became
active after the replay reached the scenario's drift phase counts: an alert left over from an
earlier replay, or one raised by the calm first phase, cannot pass the test.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from bottega.replay.player import ReplayOptions, ReplayStats
from bottega.replay.run import replay_scenario
from bottega.stack.settings import StackSettings

pytestmark = pytest.mark.timeout(900)


@dataclass
class Watched:
    stats: ReplayStats
    onset_wall: float | None  # when the replay reached the drift phase
    fired_wall: float | None  # when the alert became active, after the onset


def active_since(prometheus_url: str, alert: str, since: float) -> float | None:
    """When ``alert`` became active, if it fires now and became active after ``since``."""
    body = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=10).json()
    for a in body["data"]["alerts"]:
        if a["labels"].get("alertname") != alert or a["state"] != "firing":
            continue
        at = datetime.fromisoformat(a["activeAt"].replace("Z", "+00:00")).timestamp()
        if at >= since:
            return at
    return None


def replay_until_alert(
    settings: StackSettings, scenario: Path, alert: str, *, drift_phase: str, limit: timedelta
) -> Watched:
    """Replay ``scenario`` until ``alert`` fires after its drift phase began, or for ``limit``."""
    stop = threading.Event()
    live: list[ReplayStats] = []
    done: list[ReplayStats] = []

    def play() -> None:
        done.append(
            replay_scenario(
                settings,
                scenario,
                ReplayOptions(speed=600.0, concurrency=8),
                stop=stop,
                console=Console(file=io.StringIO(), width=200),
                duration=limit,
                observe=live.append,
            )
        )

    thread = threading.Thread(target=play, name=f"replay-{scenario.stem}", daemon=True)
    thread.start()
    onset: float | None = None
    fired: float | None = None
    try:
        while thread.is_alive() and fired is None:
            thread.join(timeout=3.0)
            if onset is None and live:
                mark = next((p for p in live[0].phases if p.name == drift_phase), None)
                onset = mark.wall if mark is not None else None
            if onset is not None:
                fired = active_since(settings.prometheus.url, alert, onset)
    finally:
        stop.set()
        thread.join(timeout=120)
    assert done, "the replay did not finish"
    return Watched(done[0], onset, fired)


@pytest.mark.parametrize(
    ("scenario", "drift_phase", "alert", "limit_h"),
    [
        ("covariate-shift", "shifted", "FeatureDriftDetected", 24),
        ("label-shift", "surge", "ModelQualityDegraded", 30),
    ],
)
def test_a_drifting_scenario_raises_its_alert(
    loop_stack: StackSettings,
    project_root: Path,
    scenario: str,
    drift_phase: str,
    alert: str,
    limit_h: int,
) -> None:
    watched = replay_until_alert(
        loop_stack,
        project_root / "scenarios" / f"{scenario}.yaml",
        alert,
        drift_phase=drift_phase,
        limit=timedelta(hours=limit_h),
    )
    stats = watched.stats
    assert stats.predict_errors == 0
    assert watched.onset_wall is not None, [p.name for p in stats.phases]
    assert watched.fired_wall is not None, (
        f"{alert} did not fire within {limit_h} simulated hours of {scenario} "
        f"({stats.transactions} transactions, up to {stats.sim_now})"
    )
