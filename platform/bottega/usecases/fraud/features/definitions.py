"""The fraud use case's features, declared in the Feast style.

- entities ``card`` and ``merchant``;
- ``card_aggregates``: a streaming view fed by a ``PushSource``; the ingest pushes it online
  and appends its history offline, one row per transaction, stamped at the transaction's time;
- ``merchant_stats``: a batch view computed daily from labelled history and materialized;
- the feature service ``fraud_v1``, which serving and training both read.

Request-time features are not a Feast object: :mod:`.request` computes them with one function
that serving and training share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, String

CARD_VIEW = "card_aggregates"
CARD_PUSH_SOURCE = "card_aggregates_push"
MERCHANT_VIEW = "merchant_stats"
FEATURE_SERVICE = "fraud_v1"
FEATURE_SERVICE_VERSION = 1

# Rows do not expire: a card's newest row describes its last activity, however old, and serving
# reads that same row online (Feast's online read applies no TTL). A shorter TTL would hide the
# row offline while serving still used it: skew.
NO_EXPIRY = timedelta(days=3650)


@dataclass(frozen=True)
class FraudFeatureRepo:
    """Every Feast object of the fraud use case."""

    card: Entity
    merchant: Entity
    card_source: FileSource
    card_push: PushSource
    card_view: FeatureView
    merchant_source: FileSource
    merchant_view: FeatureView
    service: FeatureService

    def objects(self) -> list[Any]:
        """What ``FeatureStore.apply`` registers."""
        return [
            self.card,
            self.merchant,
            self.card_push,
            self.card_view,
            self.merchant_view,
            self.service,
        ]


def fraud_feature_repo(card_glob: str, merchant_glob: str) -> FraudFeatureRepo:
    """Declare the fraud features over the offline tables at these (absolute) globs."""
    for glob in (card_glob, merchant_glob):
        if not Path(glob).is_absolute():
            raise ValueError(f"offline paths must be absolute (DuckDB resolves them): {glob}")

    card = Entity(
        name="card",
        join_keys=["card_id"],
        value_type=ValueType.STRING,
        description="A payment card; the key the ingest and serving read and write.",
    )
    merchant = Entity(
        name="merchant",
        join_keys=["merchant_id"],
        value_type=ValueType.STRING,
        description="A merchant that accepts card payments.",
    )

    card_source = FileSource(
        name="card_aggregates_history",
        path=card_glob,
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description="One row per transaction: the card's aggregates as of that transaction.",
    )
    card_push = PushSource(name=CARD_PUSH_SOURCE, batch_source=card_source)
    card_view = FeatureView(
        name=CARD_VIEW,
        entities=[card],
        ttl=NO_EXPIRY,
        source=card_push,
        online=True,
        schema=[
            Field(name="card_id", dtype=String),
            Field(name="txn_count_1h", dtype=Int64, description="Transactions in (T-1h, T]."),
            Field(name="amount_sum_1h", dtype=Float64, description="Amount in (T-1h, T]."),
            Field(name="txn_count_24h", dtype=Int64, description="Transactions in (T-24h, T]."),
            Field(name="amount_sum_24h", dtype=Float64, description="Amount in (T-24h, T]."),
            Field(name="txn_count_7d", dtype=Int64, description="Transactions in (T-7d, T]."),
            Field(name="amount_mean_7d", dtype=Float64, description="Mean amount, (T-7d, T]."),
            Field(
                name="distinct_merchants_24h",
                dtype=Int64,
                description="Distinct merchants in (T-24h, T].",
            ),
            Field(
                name="last_txn_epoch_s",
                dtype=Float64,
                description="T, the card's latest transaction; serving derives the seconds since.",
            ),
            Field(name="last_device_id", dtype=String, description="Device of the latest one."),
        ],
        tags={"team": "fraud", "kind": "streaming"},
        description="Streaming card aggregates; T is the card's latest transaction time.",
    )

    merchant_source = FileSource(
        name="merchant_stats_daily",
        path=merchant_glob,
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description="Daily snapshots, each from the labels known before its timestamp.",
    )
    merchant_view = FeatureView(
        name=MERCHANT_VIEW,
        entities=[merchant],
        ttl=NO_EXPIRY,
        source=merchant_source,
        online=True,
        schema=[
            Field(name="merchant_id", dtype=String),
            Field(
                name="merchant_txn_count_30d",
                dtype=Int64,
                description="Transactions at the merchant over the 30 days before the snapshot.",
            ),
            Field(
                name="merchant_fraud_rate_30d",
                dtype=Float64,
                description="Smoothed fraud rate of those whose label had arrived by then.",
            ),
        ],
        tags={"team": "fraud", "kind": "batch"},
        description="Merchant risk from labelled history, computed daily and materialized.",
    )

    service = FeatureService(
        name=FEATURE_SERVICE,
        features=[card_view, merchant_view],
        tags={"version": str(FEATURE_SERVICE_VERSION)},
        description="Everything the fraud model reads from the store.",
    )
    return FraudFeatureRepo(
        card=card,
        merchant=merchant,
        card_source=card_source,
        card_push=card_push,
        card_view=card_view,
        merchant_source=merchant_source,
        merchant_view=merchant_view,
        service=service,
    )
