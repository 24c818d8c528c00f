"""The fraud use case's offline tables: their schemas and how rows become Arrow tables.

- ``transactions``: the raw log, one row per transaction event, with the Kafka position it came
  from; the entity source of training sets and what the ingest rebuilds its state from;
- ``card_features``: the card view's history, one row per transaction (plus corrections);
- ``labels``: the ground truth as it arrived, with its arrival time;
- ``merchant_features``: daily merchant snapshots;
- ``oracle``: the simulator's true fraud probability of each simulated transaction, written by
  the backfill only. Training joins it, when present, to score the oracle on the same rows as the
  model; nothing the model sees comes from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from bottega.events import Label, Transaction
from bottega.usecases.fraud.aggregates import CardRow

TS = pa.timestamp("us", tz="UTC")

TRANSACTIONS = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_timestamp", TS),
        ("card_id", pa.string()),
        ("merchant_id", pa.string()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("merchant_category", pa.string()),
        ("country", pa.string()),
        ("card_country", pa.string()),
        ("channel", pa.string()),
        ("device_id", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        ("ingested_at", TS),
    ]
)

CARD_FEATURES = pa.schema(
    [
        ("card_id", pa.string()),
        ("event_timestamp", TS),
        ("created_timestamp", TS),
        ("event_id", pa.string()),
        ("txn_count_1h", pa.int64()),
        ("amount_sum_1h", pa.float64()),
        ("txn_count_24h", pa.int64()),
        ("amount_sum_24h", pa.float64()),
        ("txn_count_7d", pa.int64()),
        ("amount_mean_7d", pa.float64()),
        ("distinct_merchants_24h", pa.int64()),
        ("last_txn_epoch_s", pa.float64()),
        ("last_device_id", pa.string()),
    ]
)

LABELS = pa.schema(
    [
        ("event_id", pa.string()),
        ("transaction_id", pa.string()),
        ("card_id", pa.string()),
        ("is_fraud", pa.bool_()),
        ("transaction_time", TS),
        ("label_time", TS),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
    ]
)

MERCHANT_FEATURES = pa.schema(
    [
        ("merchant_id", pa.string()),
        ("event_timestamp", TS),
        ("created_timestamp", TS),
        ("merchant_txn_count_30d", pa.int64()),
        ("merchant_fraud_rate_30d", pa.float64()),
    ]
)

ORACLE = pa.schema(
    [
        ("event_id", pa.string()),
        ("fraud_probability", pa.float64()),
        ("pattern", pa.string()),
    ]
)


@dataclass(frozen=True)
class Source:
    """Where an event came from: its Kafka partition and offset (-1, -1 for a backfill)."""

    partition: int = -1
    offset: int = -1


BACKFILL = Source()


def transactions_table(
    txns: Sequence[Transaction], sources: Sequence[Source], ingested_at: datetime | None = None
) -> pa.Table:
    """The raw log rows of ``txns``."""
    now = ingested_at or datetime.now(UTC)
    return pa.table(
        {
            "event_id": [str(t.event_id) for t in txns],
            "event_timestamp": [t.event_time for t in txns],
            "card_id": [t.card_id for t in txns],
            "merchant_id": [t.merchant_id for t in txns],
            "amount": [t.amount for t in txns],
            "currency": [t.currency for t in txns],
            "merchant_category": [t.merchant_category for t in txns],
            "country": [t.country for t in txns],
            "card_country": [t.card_country for t in txns],
            "channel": [t.channel for t in txns],
            "device_id": [t.device_id for t in txns],
            "source_partition": [s.partition for s in sources],
            "source_offset": [s.offset for s in sources],
            "ingested_at": [now] * len(txns),
        },
        schema=TRANSACTIONS,
    )


def card_features_table(rows: Sequence[CardRow], created_at: datetime | None = None) -> pa.Table:
    """The card view rows, stamped at each row's ``as_of``."""
    now = created_at or datetime.now(UTC)
    return pa.table(
        {
            "card_id": [r.card_id for r in rows],
            "event_timestamp": [r.as_of for r in rows],
            "created_timestamp": [now] * len(rows),
            "event_id": [r.event_id for r in rows],
            "txn_count_1h": [r.txn_count_1h for r in rows],
            "amount_sum_1h": [r.amount_sum_1h for r in rows],
            "txn_count_24h": [r.txn_count_24h for r in rows],
            "amount_sum_24h": [r.amount_sum_24h for r in rows],
            "txn_count_7d": [r.txn_count_7d for r in rows],
            "amount_mean_7d": [r.amount_mean_7d for r in rows],
            "distinct_merchants_24h": [r.distinct_merchants_24h for r in rows],
            "last_txn_epoch_s": [r.last_txn_epoch_s for r in rows],
            "last_device_id": [r.last_device_id for r in rows],
        },
        schema=CARD_FEATURES,
    )


def labels_table(labels: Sequence[Label], sources: Sequence[Source]) -> pa.Table:
    """The label rows, with the time each label arrived."""
    return pa.table(
        {
            "event_id": [str(lb.event_id) for lb in labels],
            "transaction_id": [str(lb.transaction_id) for lb in labels],
            "card_id": [lb.card_id for lb in labels],
            "is_fraud": [lb.is_fraud for lb in labels],
            "transaction_time": [lb.transaction_time for lb in labels],
            "label_time": [lb.event_time for lb in labels],
            "source_partition": [s.partition for s in sources],
            "source_offset": [s.offset for s in sources],
        },
        schema=LABELS,
    )


def oracle_table(
    event_ids: Sequence[str], probabilities: Sequence[float], patterns: Sequence[str]
) -> pa.Table:
    """The oracle rows: each simulated transaction's true fraud probability and pattern."""
    return pa.table(
        {
            "event_id": list(event_ids),
            "fraud_probability": list(probabilities),
            "pattern": list(patterns),
        },
        schema=ORACLE,
    )
