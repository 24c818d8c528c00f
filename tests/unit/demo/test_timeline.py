"""The loop's timeline and report, assembled from hand-made records of each component."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bottega.demo.report import write_report
from bottega.demo.timeline import Firing, build_timeline, quality_by_version, simulated_at
from bottega.replay.player import PhaseMark, ReplayStats, Served

T0 = datetime(2026, 11, 22, 18, tzinfo=UTC)
W0 = 1_000_000.0  # wall clock of the replay's start


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat()


def served(version: str, phase: str, minute: int, score: float, fraud: bool) -> Served:
    t = T0 + timedelta(minutes=minute)
    return Served(version, phase, t, W0 + minute, score, 0.9 if fraud else 0.01, fraud, True)


def drifting() -> ReplayStats:
    stats = ReplayStats("fraud-ring", T0, T0 + timedelta(hours=10), wall_started=W0)
    # One simulated minute per wall second.
    stats.clock = [(W0 + m, T0 + timedelta(minutes=m)) for m in range(0, 601, 10)]
    stats.phases = [
        PhaseMark("bootstrap", T0, W0),
        PhaseMark("ring", T0 + timedelta(minutes=60), W0 + 60),
    ]
    old = [served("1", "ring", 60 + i, 0.2 if i % 5 else 0.1, i % 5 == 0) for i in range(100)]
    new = [served("2", "ring", 400 + i, 0.9 if i % 5 == 0 else 0.1, i % 5 == 0) for i in range(100)]
    stats.served = old + new
    stats.first_answer = {"1": (W0, T0), "2": (W0 + 400, T0 + timedelta(minutes=400))}
    return stats


RUNS = [
    {
        "id": "r1",
        "trigger": "alert",
        "alerts": ["ModelQualityDegraded"],
        "status": "succeeded",
        "received_at": iso(W0 + 200),
        "started_at": iso(W0 + 201),
        "finished_at": iso(W0 + 380),
        "version": "2",
        "decision": "promoted",
        "promotion": {"reason": "beats the champion"},
    }
]


def test_simulated_time_is_interpolated_from_the_replays_clock() -> None:
    clock = [(W0, T0), (W0 + 10, T0 + timedelta(minutes=10))]
    assert simulated_at(clock, W0 + 5) == T0 + timedelta(minutes=5)
    assert simulated_at(clock, W0 - 1) is None and simulated_at(clock, W0 + 11) is None


def test_quality_by_version_counts_only_labelled_rows_of_the_phase() -> None:
    rows = [served("1", "ring", i, 0.5, i % 2 == 0) for i in range(10)]
    rows.append(Served("1", "ring", T0, W0, 0.99, 0.99, True, labelled=False))
    rows.append(served("1", "bootstrap", 0, 0.99, True))
    quality = quality_by_version(rows, "ring")
    assert quality["1"].answered == 10 and quality["1"].frauds == 5


def test_the_timeline_follows_the_loop_in_order() -> None:
    timeline = build_timeline(
        drifting(),
        drift_phase="ring",
        old_version="1",
        alerts=[Firing("FeatureDriftDetected", True, W0 + 150)],
        runs=RUNS,
        windows=[
            {
                "window_end": (T0 + timedelta(minutes=480)).isoformat(),
                "quality_window_start": (T0 + timedelta(minutes=410)).isoformat(),
                "quality_window_end": (T0 + timedelta(minutes=470)).isoformat(),
                "drift_share": 0.1,
                "online": {"pr_auc": 0.95},
            }
        ],
    )
    assert [m.what for m in timeline.moments] == [
        "drift onset",
        "alert firing",
        "retraining started",
        "retraining finished",
        "promotion",
        "new champion answering",
        "quality recovered",
    ]
    assert timeline.new_version == "2"
    assert timeline.moment("alert firing").simulated == T0 + timedelta(minutes=150)  # type: ignore[union-attr]
    figures = timeline.figures(timedelta(hours=1))
    assert figures["detection_delay_wall_s"] == 90.0
    assert figures["detection_delay_windows"] == 1.5
    assert figures["loop_seconds"] == 250.0
    assert figures["pr_auc_recovered"] > figures["pr_auc_old_champion_new_regime"]


def test_no_alert_no_loop() -> None:
    timeline = build_timeline(
        drifting(), drift_phase="ring", old_version="1", alerts=[], runs=[], windows=[]
    )
    assert [m.what for m in timeline.moments] == ["drift onset"]
    assert "loop_seconds" not in timeline.figures(timedelta(hours=1))


def test_the_report_is_markdown_with_its_plot(tmp_path: Path) -> None:
    stats = drifting()
    timeline = build_timeline(
        stats,
        drift_phase="ring",
        old_version="1",
        alerts=[Firing("ModelQualityDegraded", True, W0 + 150)],
        runs=RUNS,
        windows=[],
    )
    page = write_report(tmp_path, timeline, [stats], timeline.figures(timedelta(hours=2)))
    text = page.read_text()
    assert "| promotion |" in text and "ModelQualityDegraded" in text
    png = page.with_suffix(".png")
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert f"]({png.name})" in text


@pytest.mark.parametrize("missing", ["runs", "first_answer"])
def test_a_loop_that_did_not_close_has_no_new_champion(missing: str) -> None:
    stats = drifting()
    runs = RUNS
    if missing == "runs":
        runs = []
    else:
        stats.first_answer.pop("2")
    timeline = build_timeline(
        stats,
        drift_phase="ring",
        old_version="1",
        alerts=[Firing("X", True, W0 + 150)],
        runs=runs,
        windows=[],
    )
    assert timeline.moment("new champion answering") is None
