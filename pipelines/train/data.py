"""The training data: the window's point-in-time frame, the oracle on the same rows, the split.

The default split is by event time: the oldest rows train, the next validate (early stopping,
calibration), the newest are the holdout that every reported metric and the promotion decision
use. A model never sees rows newer than the ones it is judged on. Retraining after drift splits
by card instead (:func:`card_split`), so that the holdout spans the drifted hours.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from bottega.errors import BottegaError
from bottega.features import training_set
from bottega.usecases.fraud.features.request import MODEL_FEATURES
from bottega.usecases.fraud.store import FraudFeatureStore

JUST_AFTER = timedelta(microseconds=1)


class TrainingDataError(BottegaError):
    """The window cannot be trained on."""

    http_status = 400


@dataclass(frozen=True)
class Split:
    """The three parts of a training window, each in event-time order."""

    train: pd.DataFrame
    val: pd.DataFrame
    holdout: pd.DataFrame
    # For a split by card: the bucket range [lo, hi) of the holdout's cards; None by time.
    holdout_cards: tuple[float, float] | None = None

    @property
    def holdout_start(self) -> datetime:
        """Event time of the holdout's first row."""
        first: datetime = pd.Timestamp(self.holdout["event_time"].iloc[0]).to_pydatetime()
        return first


def default_end(fs: FraudFeatureStore) -> datetime:
    """Just after the newest transaction in the store."""
    newest = fs.newest_transaction_time()
    if newest is None:
        raise TrainingDataError(
            "the feature store holds no transactions",
            hint="generate history first: bottega backfill",
        )
    return newest + JUST_AFTER


def load_window(
    fs: FraudFeatureStore, start: datetime, end: datetime, labels_as_of: datetime | None
) -> pd.DataFrame:
    """The labelled rows of ``[start, end)`` with an ``oracle`` column (NaN where unknown)."""
    frame = training_set(start, end, store=fs, labels_as_of=labels_as_of)
    if frame.empty:
        raise TrainingDataError(
            f"the window {start.isoformat()} .. {end.isoformat()} holds no labelled transactions",
            hint="backfill history (bottega backfill) or choose another --window",
        )
    counts = frame["is_fraud"].value_counts()
    if len(counts) < 2:
        only = "fraudulent" if bool(counts.index[0]) else "legitimate"
        raise TrainingDataError(
            f"the window {start.isoformat()} .. {end.isoformat()} holds {len(frame)} labelled "
            f"transactions, all {only}: a classifier needs both classes",
            hint="choose a longer --window",
        )
    oracle = fs.oracle_scores(frame["event_id"].tolist())
    frame["oracle"] = frame["event_id"].map(oracle).astype(float)
    return frame.sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)


def time_split(frame: pd.DataFrame, val_fraction: float, holdout_fraction: float) -> Split:
    """Oldest to newest: train, validation, holdout. Each part must hold both classes."""
    n = len(frame)
    n_holdout = max(1, int(round(n * holdout_fraction)))
    n_val = max(1, int(round(n * val_fraction)))
    split = Split(
        train=frame.iloc[: n - n_val - n_holdout].reset_index(drop=True),
        val=frame.iloc[n - n_val - n_holdout : n - n_holdout].reset_index(drop=True),
        holdout=frame.iloc[n - n_holdout :].reset_index(drop=True),
    )
    _check_classes(split)
    return split


def _check_classes(split: Split) -> None:
    for name, part in (
        ("train", split.train),
        ("validation", split.val),
        ("holdout", split.holdout),
    ):
        frauds = int(part["is_fraud"].sum())
        if frauds == 0 or frauds == len(part):
            raise TrainingDataError(
                f"the {name} part ({len(part)} rows, {frauds} frauds) holds a single class",
                hint="choose a longer --window",
            )


def card_buckets(card_ids: pd.Series) -> np.ndarray:
    """Each card's fixed place in [0, 1), from a hash of its id: the same on every run."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(str(c).encode(), digest_size=8).digest(), "big") / 2**64
            for c in card_ids
        ],
        dtype=np.float64,
    )


def in_buckets(frame: pd.DataFrame, low: float, high: float) -> pd.DataFrame:
    """The rows of the cards whose bucket lies in ``[low, high)``."""
    buckets = card_buckets(frame["card_id"])
    return frame[(buckets >= low) & (buckets < high)].reset_index(drop=True)


def card_split(frame: pd.DataFrame, val_fraction: float, holdout_fraction: float) -> Split:
    """Train, validation and holdout by card, each across the whole window.

    After drift the newest hours may not show the new regime at all (a fraud ring that works
    only at night, a retraining that starts in the morning), so a holdout of the newest rows
    cannot tell a model that learnt the regime from one that did not. Holding out whole cards
    over the whole window can, and no card is in two parts. The buckets are fixed, so an earlier
    model split by card never saw these cards either; one split by time may have been fitted on
    the older of these rows, and the promotion compares on the newer ones then
    (``pipelines.promote.job.unseen_by``).
    """
    low = 1.0 - holdout_fraction - val_fraction
    high = 1.0 - holdout_fraction
    buckets = card_buckets(frame["card_id"])
    split = Split(
        train=frame[buckets < low].reset_index(drop=True),
        val=frame[(buckets >= low) & (buckets < high)].reset_index(drop=True),
        holdout=frame[buckets >= high].reset_index(drop=True),
        holdout_cards=(high, 1.0),
    )
    _check_classes(split)
    return split


REFERENCE_SPAN = timedelta(days=1)


def reference_rows(split: Split, rows: int, seed: int) -> pd.DataFrame:
    """The drift reference: a sample of the newest day of rows that the model was not fitted on.

    The newest rows, because slow features (7-day counts, 30-day merchant rates) are still
    filling up in older history, and the monitor compares the reference with what is served
    now. A whole day, because traffic has a daily cycle: a reference that holds only some hours
    (the holdout alone may be half a day) makes every window from the other hours look drifted.
    Validation and holdout rows only, so the reference's scores are out of sample.
    """
    unseen = pd.concat([split.val, split.holdout], ignore_index=True)
    times = pd.to_datetime(unseen["event_time"], utc=True)
    newest_day = unseen[times >= times.max() - REFERENCE_SPAN]
    return newest_day.sample(n=min(rows, len(newest_day)), random_state=seed)


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the rows a model trains and is judged on: ids, features and labels, in order."""
    columns = ["event_id", *MODEL_FEATURES, "is_fraud"]
    hashes = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy(np.uint64)
    return hashlib.sha256(hashes.tobytes()).hexdigest()
