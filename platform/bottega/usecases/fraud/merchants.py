"""Merchant features, computed in batch from labelled history and materialized online.

One snapshot per merchant per day, stamped at midnight UTC ``D``. It counts the merchant's
transactions in ``[D - 30d, D)`` and its fraud rate among those whose label had *arrived* before
``D``: a label that came later was not known on day ``D``, so using it would leak the future into
training. The rate is smoothed toward the platform prior, so a merchant with three labelled
transactions does not get a rate of 0 or 1.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

import duckdb
import pyarrow as pa

from bottega.usecases.fraud.features.definitions import MERCHANT_VIEW
from bottega.usecases.fraud.features.request import MERCHANT_PRIOR_FRAUD_RATE
from bottega.usecases.fraud.store import FraudFeatureStore
from bottega.usecases.fraud.tables import MERCHANT_FEATURES

log = logging.getLogger(__name__)

WINDOW_DAYS = 30
# Pseudo-count of the prior: a merchant needs about this many labels before its own rate counts
# as much as the prior does.
PRIOR_WEIGHT = 20.0

_SNAPSHOTS = f"""
WITH days AS (
    SELECT unnest(generate_series($first::TIMESTAMPTZ, $last::TIMESTAMPTZ, INTERVAL 1 DAY)) AS d
),
lb AS (
    SELECT transaction_id, is_fraud, label_time FROM labels
    QUALIFY row_number() OVER (PARTITION BY transaction_id ORDER BY label_time) = 1
)
SELECT t.merchant_id,
       days.d AS event_timestamp,
       count(*) AS merchant_txn_count_30d,
       count(lb.transaction_id) AS labelled,
       coalesce(sum(CASE WHEN lb.is_fraud THEN 1 ELSE 0 END), 0) AS frauds
FROM days
JOIN txns t
  ON t.event_timestamp >= days.d - INTERVAL {WINDOW_DAYS} DAY AND t.event_timestamp < days.d
LEFT JOIN lb ON lb.transaction_id = t.event_id AND lb.label_time < days.d
GROUP BY 1, 2
"""


def merchant_snapshots(fs: FraudFeatureStore, first: date, last: date) -> pa.Table:
    """Every merchant's snapshot for each day from ``first`` to ``last``, inclusive."""
    with duckdb.connect() as con:
        con.sql(
            "CREATE VIEW txns AS SELECT DISTINCT ON (event_id) event_id, merchant_id, "
            f"event_timestamp FROM read_parquet('{fs.transactions.glob}')"
        )
        con.sql(f"CREATE VIEW labels AS SELECT * FROM read_parquet('{fs.labels.glob}')")
        counts = con.sql(
            _SNAPSHOTS,
            params={
                "first": datetime.combine(first, time(), UTC),
                "last": datetime.combine(last, time(), UTC),
            },
        ).to_arrow_table()
    labelled = counts["labelled"].to_numpy().astype(float)
    frauds = counts["frauds"].to_numpy().astype(float)
    rate = (frauds + PRIOR_WEIGHT * MERCHANT_PRIOR_FRAUD_RATE) / (labelled + PRIOR_WEIGHT)
    now = datetime.now(UTC)
    return pa.table(
        {
            "merchant_id": counts["merchant_id"],
            "event_timestamp": counts["event_timestamp"],
            "created_timestamp": pa.array([now] * counts.num_rows, type=MERCHANT_FEATURES[2].type),
            "merchant_txn_count_30d": counts["merchant_txn_count_30d"],
            "merchant_fraud_rate_30d": pa.array(rate),
        }
    ).cast(MERCHANT_FEATURES)


def refresh_merchant_features(fs: FraudFeatureStore, first: date, last: date) -> int:
    """Compute the snapshots for ``[first, last]``, append them offline and materialize online."""
    table = merchant_snapshots(fs, first, last)
    if table.num_rows:
        fs.merchant_features.write(table)
        start = datetime.combine(first, time(), UTC) - timedelta(seconds=1)
        end = datetime.combine(last, time(), UTC) + timedelta(seconds=1)
        fs.store.materialize(start, end, feature_views=[MERCHANT_VIEW])
    log.info("merchant features refreshed", extra={"rows": table.num_rows, "last": str(last)})
    return int(table.num_rows)
