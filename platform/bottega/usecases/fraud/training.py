"""Point-in-time-correct training sets for the fraud model.

Each labelled transaction is joined with the card and merchant rows as they stood *strictly
before* it: Feast's point-in-time join takes the newest row at or before the entity timestamp,
so the entity timestamp is the transaction's time less one microsecond. The row that the
transaction itself produced is therefore never used, exactly as serving, which scores a
transaction before the ingest has seen it, never uses it. Then the request-time features are
computed by the same function serving calls.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pandas as pd

from bottega.errors import BottegaError
from bottega.usecases.fraud.aggregates import CARD_FEATURES
from bottega.usecases.fraud.features.request import MODEL_FEATURES, request_features
from bottega.usecases.fraud.store import FraudFeatureStore, transaction_from_row

log = logging.getLogger(__name__)

JUST_BEFORE = timedelta(microseconds=1)
MERCHANT_FEATURE_COLUMNS = ("merchant_txn_count_30d", "merchant_fraud_rate_30d")


class TrainingSetError(BottegaError):
    """The training set could not be built as asked."""

    http_status = 400


def fraud_training_set(
    fs: FraudFeatureStore,
    start: datetime,
    end: datetime,
    *,
    labels_as_of: datetime | None = None,
    labelled_only: bool = True,
) -> pd.DataFrame:
    """Transactions with event time in ``[start, end)``, their model features and their labels.

    ``labels_as_of`` hides labels that arrived after it (default: every label we have), so a
    training run sees only the labels that existed when it ran. With ``labelled_only`` the
    unlabelled transactions are removed, and their count is logged; nothing else is dropped: the
    result has one row per distinct transaction in the window.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise TrainingSetError("start and end must be timezone-aware (UTC)")
    if end <= start:
        raise TrainingSetError(f"the window is empty: start {start} is not before end {end}")

    txns = fs.transactions.query(
        "SELECT * FROM t WHERE event_timestamp >= ? AND event_timestamp < ? "
        "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ingested_at) = 1 "
        "ORDER BY event_timestamp, event_id",
        [start, end],
    ).to_pandas()
    txns = txns.join(_labels(fs, labels_as_of), on="event_id")
    if labelled_only:
        # Join only what will be kept: the point-in-time join costs per row.
        kept = txns[txns["is_fraud"].notna()].reset_index(drop=True)
        log.info(
            "training window",
            extra={"transactions": len(txns), "unlabelled_removed": len(txns) - len(kept)},
        )
        txns = kept
    if txns.empty:
        return pd.DataFrame(columns=_columns())

    entity_df = pd.DataFrame(
        {
            "event_id": txns["event_id"],
            "card_id": txns["card_id"],
            "merchant_id": txns["merchant_id"],
            "event_timestamp": pd.to_datetime(txns["event_timestamp"], utc=True) - JUST_BEFORE,
        }
    )
    joined = fs.store.get_historical_features(
        entity_df=entity_df, features=fs.store.get_feature_service(fs.repo.service.name)
    ).to_df()
    if len(joined) != len(entity_df) or set(joined["event_id"]) != set(entity_df["event_id"]):
        raise TrainingSetError(
            f"the point-in-time join returned {len(joined)} rows for {len(entity_df)} transactions"
        )
    history = joined.set_index("event_id").reindex(txns["event_id"])[
        [*CARD_FEATURES, *MERCHANT_FEATURE_COLUMNS]
    ]
    # pandas turns a missing join into NaN or NA; request_features reads None as "no history".
    history = history.astype(object).where(history.notna(), None)

    # One row holds the card's and the merchant's columns: request_features reads each by name.
    features = pd.DataFrame.from_records(
        [
            request_features(transaction_from_row(raw), row, row)
            for raw, row in zip(txns.to_dict("records"), history.to_dict("records"), strict=True)
        ],
        columns=list(MODEL_FEATURES),
    )
    frame = pd.concat(
        [
            txns[["event_id", "event_timestamp", "card_id", "merchant_id"]]
            .rename(columns={"event_timestamp": "event_time"})
            .reset_index(drop=True),
            features,
            txns[["is_fraud", "label_time"]].reset_index(drop=True),
        ],
        axis=1,
    )
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True).dt.as_unit("ns")
    frame["label_time"] = pd.to_datetime(frame["label_time"], utc=True).dt.as_unit("ns")
    if labelled_only:
        frame["is_fraud"] = frame["is_fraud"].astype(bool)
    else:
        frame["is_fraud"] = frame["is_fraud"].astype(object).where(frame["is_fraud"].notna(), None)
    return frame[_columns()]


def _columns() -> list[str]:
    return [
        "event_id",
        "event_time",
        "card_id",
        "merchant_id",
        *MODEL_FEATURES,
        "is_fraud",
        "label_time",
    ]


def _labels(fs: FraudFeatureStore, as_of: datetime | None) -> pd.DataFrame:
    """The first label of each transaction that had arrived by ``as_of``, indexed by its id."""
    where = "WHERE label_time <= ?" if as_of is not None else ""
    return (
        fs.labels.query(
            f"SELECT transaction_id, is_fraud, label_time FROM t {where} "
            "QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY label_time) = 1",
            [as_of] if as_of is not None else [],
        )
        .to_pandas()
        .set_index("transaction_id")
    )
