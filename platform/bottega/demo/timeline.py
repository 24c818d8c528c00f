"""The closed loop's timeline, read back from the platform itself.

Every moment comes from the component that lived it: the drift onset from the replay (the phase
change), the alert from Prometheus (``ALERTS``), the retraining and the promotion from the
trainer's ``/runs``, the swap from the first answer the model server gave with the new version,
and the quality from the monitor's per-window reports. Quality by model version is also scored
against the simulator's ground truth on exactly the transactions each version answered.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from bottega.replay.player import ReplayStats, Served
from bottega.usecases.fraud.oracle import pr_auc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Moment:
    """One step of the loop, in wall time and in simulated time."""

    what: str
    wall: float
    simulated: datetime | None
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        """Plain values."""
        return {
            "what": self.what,
            "wall": round(self.wall, 3),
            "simulated": self.simulated.isoformat() if self.simulated else None,
            "detail": self.detail,
        }


def simulated_at(clock: Sequence[tuple[float, datetime]], wall: float) -> datetime | None:
    """The replay's simulated time at ``wall``, interpolated from its clock samples.

    None outside the replay (before it started, or after it ended).
    """
    if not clock or wall < clock[0][0] or wall > clock[-1][0]:
        return None
    walls = [w for w, _ in clock]
    i = bisect.bisect_right(walls, wall)
    if i >= len(clock):
        return clock[-1][1]
    (w0, t0), (w1, t1) = clock[i - 1], clock[i]
    if w1 <= w0:
        return t0
    return t0 + (t1 - t0) * ((wall - w0) / (w1 - w0))


@dataclass(frozen=True)
class Firing:
    """An alert's first firing, as Prometheus recorded it."""

    name: str
    retrain: bool
    wall: float


def firing_alerts(prometheus_url: str, since: float, until: float) -> list[Firing]:
    """Each alert that fired between ``since`` and ``until``, at its first firing, in order."""
    response = httpx.get(
        f"{prometheus_url}/api/v1/query_range",
        params={
            "query": 'ALERTS{alertstate="firing"}',
            "start": f"{since:.3f}",
            "end": f"{until:.3f}",
            "step": "1s",
        },
        timeout=10.0,
    )
    response.raise_for_status()
    first: dict[str, Firing] = {}
    for series in response.json()["data"]["result"]:
        labels = series["metric"]
        name = labels.get("alertname", "?")
        wall = float(series["values"][0][0])
        if name not in first or wall < first[name].wall:
            first[name] = Firing(name, labels.get("retrain") == "true", wall)
    return sorted(first.values(), key=lambda f: f.wall)


def trainer_runs(trainer_url: str) -> list[dict[str, Any]]:
    """The trainer's run history, oldest first."""
    response = httpx.get(f"{trainer_url}/runs", timeout=10.0)
    response.raise_for_status()
    data = response.json()
    runs: list[dict[str, Any]] = data["runs"] if isinstance(data, dict) else data
    return sorted(runs, key=lambda r: str(r.get("received_at", "")))


def monitor_windows(monitor_url: str) -> list[dict[str, Any]]:
    """The monitor's per-window summaries, oldest first."""
    response = httpx.get(f"{monitor_url}/reports", timeout=10.0)
    response.raise_for_status()
    windows: list[dict[str, Any]] = response.json()
    return sorted(windows, key=lambda w: str(w.get("window_end", "")))


@dataclass(frozen=True)
class VersionQuality:
    """How one model version ranked the labelled transactions it answered in one phase."""

    version: str
    phase: str
    answered: int
    frauds: int
    pr_auc: float | None
    oracle_pr_auc: float | None  # the ceiling, on the same rows

    def to_dict(self) -> dict[str, object]:
        """Plain values."""
        return self.__dict__.copy()


def quality_by_version(served: Sequence[Served], phase: str) -> dict[str, VersionQuality]:
    """PR-AUC of each version on the labelled transactions of ``phase`` that it answered."""
    rows: dict[str, list[Served]] = {}
    for s in served:
        if s.phase == phase and s.labelled:
            rows.setdefault(s.version, []).append(s)
    out = {}
    for version, answered in rows.items():
        truth = [s.is_fraud for s in answered]
        out[version] = VersionQuality(
            version,
            phase,
            len(answered),
            sum(truth),
            pr_auc(truth, [s.score for s in answered]),
            pr_auc(truth, [s.oracle for s in answered]),
        )
    return out


@dataclass
class Timeline:
    """The loop, step by step, and the figures that judge it."""

    moments: list[Moment] = field(default_factory=list)
    alerts: list[Firing] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, VersionQuality] = field(default_factory=dict)
    old_version: str | None = None
    new_version: str | None = None

    def moment(self, what: str) -> Moment | None:
        """The first moment called ``what``."""
        return next((m for m in self.moments if m.what == what), None)

    def figures(self, window: timedelta) -> dict[str, float]:
        """The loop's benchmark figures (the ``loop`` record's metrics); only those known."""
        out: dict[str, float] = {}
        onset, alert = self.moment("drift onset"), self.moment("alert firing")
        if onset is not None and alert is not None:
            out["detection_delay_wall_s"] = round(alert.wall - onset.wall, 1)
            if onset.simulated is not None and alert.simulated is not None:
                delay = (alert.simulated - onset.simulated).total_seconds()
                out["detection_delay_sim_s"] = round(delay, 1)
                out["detection_delay_windows"] = round(delay / window.total_seconds(), 2)
        swap = self.moment("new champion answering")
        if alert is not None and swap is not None:
            out["loop_seconds"] = round(swap.wall - alert.wall, 1)
        new = self.quality.get(self.new_version or "")
        if new is not None and new.pr_auc is not None and new.oracle_pr_auc is not None:
            out["pr_auc_recovered"] = round(new.pr_auc, 4)
            out["pr_auc_oracle_new_regime"] = round(new.oracle_pr_auc, 4)
        old = self.quality.get(self.old_version or "")
        if old is not None and old.pr_auc is not None:
            out["pr_auc_old_champion_new_regime"] = round(old.pr_auc, 4)
        return out


def build_timeline(
    drifted: ReplayStats,
    *,
    drift_phase: str,
    old_version: str,
    alerts: list[Firing],
    runs: list[dict[str, Any]],
    windows: list[dict[str, Any]],
) -> Timeline:
    """Assemble the loop's moments after a drifting replay."""
    clock = drifted.clock
    timeline = Timeline(alerts=alerts, runs=runs, windows=windows, old_version=old_version)
    onset = next((p for p in drifted.phases if p.name == drift_phase), None)
    if onset is None:
        return timeline
    timeline.moments.append(Moment("drift onset", onset.wall, onset.simulated, drift_phase))
    alert = next((a for a in alerts if a.retrain and a.wall >= onset.wall), None)
    if alert is not None:
        timeline.moments.append(
            Moment("alert firing", alert.wall, simulated_at(clock, alert.wall), alert.name)
        )
    run = next(
        (r for r in runs if _wall(r.get("received_at")) >= onset.wall and r.get("started_at")),
        None,
    )
    if run is not None:
        started = _wall(run["started_at"])
        timeline.moments.append(
            Moment(
                "retraining started",
                started,
                simulated_at(clock, started),
                ", ".join(run.get("alerts") or []) or str(run.get("trigger")),
            )
        )
        if run.get("finished_at"):
            finished = _wall(run["finished_at"])
            decision = run.get("decision") or run.get("status")
            version = run.get("version")
            timeline.moments.append(
                Moment(
                    "retraining finished",
                    finished,
                    simulated_at(clock, finished),
                    f"v{version}: {decision}",
                )
            )
            if decision == "promoted" and version:
                timeline.new_version = str(version)
                reason = (run.get("promotion") or {}).get("reason", "")
                timeline.moments.append(
                    Moment(
                        "promotion",
                        finished,
                        simulated_at(clock, finished),
                        f"v{old_version} -> v{version}: {reason}",
                    )
                )
    if timeline.new_version and timeline.new_version in drifted.first_answer:
        wall, simulated = drifted.first_answer[timeline.new_version]
        timeline.moments.append(
            Moment("new champion answering", wall, simulated, f"v{timeline.new_version}")
        )
    timeline.quality = quality_by_version(drifted.served, drift_phase)
    recovered = _recovered(windows, timeline, drifted)
    if recovered is not None:
        timeline.moments.append(recovered)
    timeline.moments.sort(key=lambda m: m.wall)
    return timeline


def _recovered(
    windows: list[dict[str, Any]], timeline: Timeline, drifted: ReplayStats
) -> Moment | None:
    # The first monitor window scored entirely after the swap whose online PR-AUC beats the
    # old champion's on the drifted regime.
    swap = timeline.moment("new champion answering")
    old = timeline.quality.get(timeline.old_version or "")
    if swap is None or swap.simulated is None or old is None or old.pr_auc is None:
        return None
    for w in windows:
        start = w.get("quality_window_start")
        value = (w.get("online") or {}).get("pr_auc")
        if start is None or value is None:
            continue
        begun = datetime.fromisoformat(start)
        if begun >= swap.simulated and value > old.pr_auc:
            end = datetime.fromisoformat(w["window_end"])
            wall = _wall_at(drifted.clock, end)
            return Moment(
                "quality recovered",
                wall if wall is not None else swap.wall,
                end,
                f"online PR-AUC {value:.3f} (old champion {old.pr_auc:.3f})",
            )
    return None


def _wall_at(clock: Sequence[tuple[float, datetime]], simulated: datetime) -> float | None:
    for wall, t in clock:
        if t >= simulated:
            return wall
    return None


def _wall(value: object) -> float:
    if not value:
        return float("-inf")
    return datetime.fromisoformat(str(value)).timestamp()
