"""The monitor's windows in event time, the label join and the online metrics, with no I/O."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bottega.events import Label, Prediction
from services.monitor.quality import online_quality
from services.monitor.windows import Window, Windows, WindowSpec, align_up

T0 = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
SPEC = WindowSpec(
    size=timedelta(hours=1),
    step=timedelta(minutes=30),
    label_wait=timedelta(hours=1),
    lateness=timedelta(minutes=1),
)


def prediction(at: datetime, score: float = 0.1, arm: str = "champion") -> Prediction:
    return Prediction(
        event_time=at,
        transaction_id=uuid.uuid4(),
        card_id="c1",
        model_name="fraud-detector",
        model_version="1",
        arm=arm,  # type: ignore[arg-type]
        score=score,
        threshold=0.5,
        decision=score >= 0.5,
        features={"log_amount": 3.0},
        latency_ms=1.0,
    )


def label(p: Prediction, is_fraud: bool, delay: timedelta = timedelta(hours=2)) -> Label:
    return Label(
        event_time=p.event_time + delay,
        transaction_id=p.transaction_id,
        card_id=p.card_id,
        is_fraud=is_fraud,
        transaction_time=p.event_time,
    )


def test_windows_close_on_aligned_boundaries_once_the_watermark_passes_them() -> None:
    windows = Windows(SPEC)
    windows.add_prediction(prediction(T0 + timedelta(minutes=5)))
    assert windows.advance() == []
    # The first window ends at the first boundary a full window after the first event.
    windows.add_prediction(prediction(T0 + timedelta(hours=1, minutes=30)))
    assert windows.advance() == []  # not yet past end + lateness
    windows.add_prediction(prediction(T0 + timedelta(hours=1, minutes=31)))
    closed = windows.advance()
    assert [(w.start, w.end) for w in closed] == [
        (T0 + timedelta(minutes=30), T0 + timedelta(hours=1, minutes=30))
    ]
    assert len(closed[0].predictions) == 0 or all(
        closed[0].start <= p.event_time < closed[0].end for p in closed[0].predictions
    )


def test_each_window_holds_exactly_its_champion_predictions() -> None:
    windows = Windows(SPEC)
    inside = [prediction(T0 + timedelta(minutes=m)) for m in (0, 20, 59)]
    for p in inside:
        windows.add_prediction(p)
    windows.add_prediction(prediction(T0 + timedelta(minutes=10), arm="shadow"))
    windows.add_prediction(prediction(T0 + timedelta(minutes=61)))
    windows.add_prediction(prediction(T0 + timedelta(minutes=62)))
    (closed,) = [w for w in windows.advance() if w.end == T0 + timedelta(hours=1)]
    assert {p.transaction_id for p in closed.predictions} == {p.transaction_id for p in inside}
    assert closed.other_arms == 1


def test_a_redelivered_prediction_counts_once() -> None:
    windows = Windows(SPEC)
    p = prediction(T0)
    windows.add_prediction(p)
    windows.add_prediction(p)
    windows.add_prediction(prediction(T0 + timedelta(minutes=62)))
    (closed,) = [w for w in windows.advance() if w.end == T0 + timedelta(hours=1)]
    assert len(closed.predictions) == 1


def test_quality_rows_are_the_window_label_wait_ago_joined_by_transaction_id() -> None:
    windows = Windows(SPEC)
    old = [
        prediction(T0 + timedelta(minutes=m), score=s) for m, s in ((5, 0.9), (15, 0.2), (25, 0.1))
    ]
    for p in old:
        windows.add_prediction(p)
    windows.add_label(label(old[0], True))
    windows.add_label(label(old[1], False))
    # old[2]'s label never arrives. A label for a transaction the monitor never saw is ignored.
    windows.add_label(label(prediction(T0 + timedelta(minutes=7)), True))
    windows.add_prediction(prediction(T0 + timedelta(hours=2, minutes=2)))
    (closed,) = [w for w in windows.advance() if w.end == T0 + timedelta(hours=2)]
    assert (closed.quality_start, closed.quality_end) == (T0, T0 + timedelta(hours=1))
    assert closed.quality_rows == 3
    assert sorted((j.score, j.is_fraud) for j in closed.labelled) == [(0.2, False), (0.9, True)]
    assert closed.unlabelled == 1


def test_unlabelled_predictions_are_never_negatives() -> None:
    rows = [
        prediction(T0 + timedelta(minutes=m), score=s) for m, s in ((1, 0.9), (2, 0.6), (3, 0.1))
    ]
    windows = Windows(SPEC)
    for p in rows:
        windows.add_prediction(p)
    windows.add_label(label(rows[0], True))
    windows.add_label(label(rows[2], False))
    # rows[1] scored 0.6 (an alert) and has no label: were it a negative, precision would be 0.5.
    windows.add_prediction(prediction(T0 + timedelta(hours=2, minutes=2)))
    (closed,) = [w for w in windows.advance() if w.end == T0 + timedelta(hours=2)]
    quality = online_quality(closed)
    assert quality["precision"] == 1.0
    assert quality["recall"] == 1.0
    assert quality["label_coverage"] == pytest.approx(2 / 3)
    assert quality["labelled"] == 2 and quality["labelled_frauds"] == 1
    assert quality["pr_auc"] == 1.0


def test_label_delay_is_the_median_of_labels_arriving_in_the_window() -> None:
    windows = Windows(SPEC)
    base = [prediction(T0 + timedelta(minutes=m)) for m in (1, 2, 3)]
    for p in base:
        windows.add_prediction(p)
    # Arrive at 1:11, 1:22 and 2:33: the last one belongs to the next window.
    for p, minutes in zip(base, (70, 80, 150), strict=True):
        windows.add_label(label(p, False, delay=timedelta(minutes=minutes)))
    windows.add_prediction(prediction(T0 + timedelta(hours=2, minutes=2)))
    (closed,) = [w for w in windows.advance() if w.end == T0 + timedelta(hours=2)]
    assert online_quality(closed)["label_delay_seconds"] == pytest.approx(75 * 60)


def test_undefined_metrics_are_nan_not_zero() -> None:
    window = Window(T0, T0, [], T0, T0, quality_rows=0, labelled=[])
    quality = online_quality(window)
    assert math.isnan(quality["pr_auc"]) and math.isnan(quality["label_coverage"])
    assert quality["labelled"] == 0


def test_a_gap_in_traffic_skips_ahead_instead_of_emitting_empty_windows() -> None:
    windows = Windows(SPEC)
    windows.add_prediction(prediction(T0))
    windows.add_prediction(prediction(T0 + timedelta(days=3, minutes=5)))
    closed = windows.advance()
    assert len(closed) <= 3
    assert windows.skipped > 100
    assert closed[-1].end == T0 + timedelta(days=3)


def test_old_rows_are_pruned() -> None:
    windows = Windows(SPEC)
    for minute in range(0, 600, 5):
        windows.add_prediction(prediction(T0 + timedelta(minutes=minute)))
        windows.advance()
    held, _ = windows.sizes
    # Without pruning it would hold all 120; rows newer than the last closed end stay too.
    assert held <= (SPEC.retention + SPEC.step + SPEC.lateness) / timedelta(minutes=5) + 1


def test_align_up() -> None:
    assert align_up(T0 + timedelta(minutes=1), timedelta(minutes=30)) == T0 + timedelta(minutes=30)
    assert align_up(T0, timedelta(minutes=30)) == T0


def catch_up(windows: Windows, backlog: dict[int, list[Prediction]]) -> list[Window]:
    """Read each partition's backlog whole, one after another, as a restarted consumer may."""
    closed: list[Window] = []
    left = set(backlog)
    for partition, rows in backlog.items():
        for p in rows:
            windows.add_prediction(p, partition)
        left.discard(partition)
        closed += windows.advance(unread=left)
    return closed


def backlog_of_two_partitions() -> dict[int, list[Prediction]]:
    minutes = range(0, 240, 2)
    return {
        0: [prediction(T0 + timedelta(minutes=m)) for m in minutes],
        1: [prediction(T0 + timedelta(minutes=m + 1)) for m in minutes],
    }


def test_a_backlog_read_one_partition_after_another_closes_no_window_early() -> None:
    backlog = backlog_of_two_partitions()
    closed = catch_up(Windows(SPEC), backlog)
    assert closed, "the windows close once both backlogs are read"
    every = [p for rows in backlog.values() for p in rows]
    for w in closed:
        expected = {p.transaction_id for p in every if w.start <= p.event_time < w.end}
        assert {s.transaction_id for s in w.predictions} == expected


def test_without_the_unread_partitions_the_first_backlog_closes_windows_short() -> None:
    # The failure the unread partitions prevent: partition 0's newer events close the windows
    # whose rows still wait in partition 1.
    windows = Windows(SPEC)
    backlog = backlog_of_two_partitions()
    for p in backlog[0]:
        windows.add_prediction(p, 0)
    early = windows.advance()
    assert early and all(len(w.predictions) == 30 for w in early)  # half of each window's 60


def test_a_partition_with_a_backlog_that_gave_nothing_yet_holds_the_watermark() -> None:
    windows = Windows(SPEC)
    windows.add_prediction(prediction(T0), 0)
    windows.add_prediction(prediction(T0 + timedelta(hours=5)), 0)
    assert windows.advance(unread={1}) == []
    assert windows.watermark is None
    windows.add_prediction(prediction(T0 + timedelta(minutes=50)), 1)
    assert windows.advance(unread={1}) == []  # 00:50 is not past the first window's end
    assert windows.watermark == T0 + timedelta(minutes=50)
    assert windows.advance(unread=()) != []  # read to the end: the newest event rules
    assert windows.watermark == T0 + timedelta(hours=5)


def test_the_watermark_never_moves_back() -> None:
    windows = Windows(SPEC)
    windows.add_prediction(prediction(T0 + timedelta(hours=3)), 0)
    windows.advance()
    windows.add_prediction(prediction(T0 + timedelta(hours=1)), 1)
    windows.advance(unread={1})
    assert windows.watermark == T0 + timedelta(hours=3)
