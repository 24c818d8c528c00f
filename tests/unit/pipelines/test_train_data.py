"""The training job's split and fingerprint."""

from __future__ import annotations

import pandas as pd
import pytest

from bottega.usecases.fraud.features.request import MODEL_FEATURES
from pipelines.train.data import TrainingDataError, fingerprint, time_split


def rows(labels: list[bool]) -> pd.DataFrame:
    n = len(labels)
    data: dict[str, object] = {name: [float(i) for i in range(n)] for name in MODEL_FEATURES}
    data.update(
        event_id=[f"e{i}" for i in range(n)],
        event_time=pd.date_range("2025-03-01", periods=n, freq="min", tz="UTC"),
        is_fraud=labels,
    )
    return pd.DataFrame(data)


def test_the_holdout_is_the_newest_part() -> None:
    frame = rows([i % 5 == 0 for i in range(100)])
    split = time_split(frame, 0.15, 0.15)
    assert (len(split.train), len(split.val), len(split.holdout)) == (70, 15, 15)
    assert split.train["event_time"].max() < split.val["event_time"].min()
    assert split.val["event_time"].max() < split.holdout["event_time"].min()


def test_a_part_with_one_class_is_a_clear_error() -> None:
    labels = [False] * 100
    labels[3] = labels[80] = True  # nothing in the holdout
    with pytest.raises(TrainingDataError, match="holdout part .* single class"):
        time_split(rows(labels), 0.15, 0.15)


def test_the_fingerprint_changes_with_any_label() -> None:
    frame = rows([i % 5 == 0 for i in range(50)])
    flipped = frame.copy()
    flipped.loc[7, "is_fraud"] = not flipped.loc[7, "is_fraud"]
    assert fingerprint(frame) == fingerprint(frame.copy())
    assert fingerprint(frame) != fingerprint(flipped)


def test_the_label_cutoff_follows_a_simulated_clock_ahead_of_the_wall() -> None:
    from datetime import UTC, datetime, timedelta

    from pipelines.train.job import labels_cutoff

    class Store:
        def __init__(self, newest: datetime | None) -> None:
            self.newest = newest

        def newest_label_time(self) -> datetime | None:
            return self.newest

    ahead = datetime.now(UTC) + timedelta(days=3)
    assert labels_cutoff(Store(ahead)) > ahead  # type: ignore[arg-type]
    before = datetime.now(UTC)
    assert labels_cutoff(Store(None)) >= before  # type: ignore[arg-type]
    assert labels_cutoff(Store(before - timedelta(days=400))) >= before  # type: ignore[arg-type]


def test_the_reference_is_the_newest_day_of_unfitted_rows() -> None:
    from pipelines.train.data import reference_rows

    times = pd.date_range("2026-01-01", periods=96 * 4, freq="15min", tz="UTC")
    frame = pd.DataFrame({"event_time": times, "is_fraud": [i % 7 == 0 for i in range(len(times))]})
    split = time_split(frame, val_fraction=0.25, holdout_fraction=0.25)
    ref = reference_rows(split, rows=10_000, seed=0)
    newest = times.max()
    assert len(ref) == 96 + 1  # every row of the newest day, the boundary included
    assert pd.to_datetime(ref["event_time"]).min() == newest - pd.Timedelta(days=1)
    # A whole daily cycle: every hour of the day is in the reference.
    assert set(pd.to_datetime(ref["event_time"]).dt.hour) == set(range(24))
    assert len(reference_rows(split, rows=20, seed=0)) == 20


def test_a_split_by_card_keeps_each_card_in_one_part_across_the_whole_window() -> None:
    from pipelines.train.data import card_split, in_buckets

    n = 4000
    times = pd.date_range("2026-01-01", periods=n, freq="1min", tz="UTC")
    frame = pd.DataFrame(
        {
            "event_time": times,
            "card_id": [f"card-{i % 397}" for i in range(n)],
            "is_fraud": [i % 13 == 0 for i in range(n)],
        }
    )
    split = card_split(frame, val_fraction=0.15, holdout_fraction=0.15)
    parts = [set(p["card_id"]) for p in (split.train, split.val, split.holdout)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(len(p) for p in (split.train, split.val, split.holdout)) == n
    assert 0.08 < len(split.holdout) / n < 0.22
    # The holdout spans the window, not only its newest rows.
    held = pd.to_datetime(split.holdout["event_time"])
    assert held.min() < times[n // 10] and held.max() > times[-n // 10]
    # The promotion job rebuilds exactly these rows from the recorded bucket range.
    assert split.holdout_cards is not None
    rebuilt = in_buckets(frame, *split.holdout_cards)
    assert rebuilt["card_id"].tolist() == split.holdout["card_id"].tolist()
