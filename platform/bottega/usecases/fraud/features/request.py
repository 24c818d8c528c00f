"""Request-time features: computed when a transaction is scored, from the transaction itself and
the card's and merchant's rows.

:func:`request_features` is the one function that serving and training share, so the two cannot
compute a feature differently. The defaults for a card or merchant the store has never seen are
declared here, once, and both paths use them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bottega.events import Transaction

# A card with no history: no counts, no amounts, no previous transaction.
CARD_DEFAULTS: Mapping[str, Any] = {
    "txn_count_1h": 0,
    "amount_sum_1h": 0.0,
    "txn_count_24h": 0,
    "amount_sum_24h": 0.0,
    "txn_count_7d": 0,
    "amount_mean_7d": 0.0,
    "distinct_merchants_24h": 0,
    "last_txn_epoch_s": None,
    "last_device_id": "",
}

# A merchant with no labelled history gets the platform's prior fraud rate.
MERCHANT_PRIOR_FRAUD_RATE = 0.005
MERCHANT_DEFAULTS: Mapping[str, Any] = {
    "merchant_txn_count_30d": 0,
    "merchant_fraud_rate_30d": MERCHANT_PRIOR_FRAUD_RATE,
}

# Seconds since the last transaction when there was none: 30 days, the far end of the scale.
NO_PREVIOUS_TXN_S = 30 * 24 * 3600.0

NUMERIC_FEATURES: tuple[str, ...] = (
    "log_amount",
    "amount_to_mean_7d",
    "txn_count_1h",
    "amount_sum_1h",
    "txn_count_24h",
    "amount_sum_24h",
    "txn_count_7d",
    "amount_mean_7d",
    "distinct_merchants_24h",
    "log_seconds_since_last",
    "hour_of_day",
    "day_of_week",
    "country_mismatch",
    "device_changed",
    "is_online",
    "merchant_txn_count_30d",
    "merchant_fraud_rate_30d",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("merchant_category", "country")
MODEL_FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES


def _value(row: Mapping[str, Any] | None, defaults: Mapping[str, Any], name: str) -> Any:
    if row is None:
        return defaults[name]
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return defaults[name]
    return value


def request_features(
    txn: Transaction,
    card: Mapping[str, Any] | None,
    merchant: Mapping[str, Any] | None,
) -> dict[str, float | str]:
    """The model's input for ``txn``, given the card's and merchant's rows as they stood before it.

    ``card`` and ``merchant`` map feature names to values; None, a missing key, None or NaN all
    mean "no history" and take the documented defaults.
    """
    c = {name: _value(card, CARD_DEFAULTS, name) for name in CARD_DEFAULTS}
    m = {name: _value(merchant, MERCHANT_DEFAULTS, name) for name in MERCHANT_DEFAULTS}
    ts = txn.event_time.timestamp()
    last = c["last_txn_epoch_s"]
    seconds_since_last = NO_PREVIOUS_TXN_S if last is None else max(0.0, ts - float(last))
    mean_7d = float(c["amount_mean_7d"])
    last_device = str(c["last_device_id"])
    return {
        "log_amount": math.log1p(txn.amount),
        "amount_to_mean_7d": txn.amount / mean_7d if mean_7d > 0 else 1.0,
        "txn_count_1h": float(c["txn_count_1h"]),
        "amount_sum_1h": float(c["amount_sum_1h"]),
        "txn_count_24h": float(c["txn_count_24h"]),
        "amount_sum_24h": float(c["amount_sum_24h"]),
        "txn_count_7d": float(c["txn_count_7d"]),
        "amount_mean_7d": mean_7d,
        "distinct_merchants_24h": float(c["distinct_merchants_24h"]),
        "log_seconds_since_last": math.log1p(seconds_since_last),
        "hour_of_day": float(txn.event_time.hour),
        "day_of_week": float(txn.event_time.weekday()),
        "country_mismatch": float(txn.country != txn.card_country),
        "device_changed": float(
            bool(txn.device_id) and bool(last_device) and txn.device_id != last_device
        ),
        "is_online": float(txn.channel == "online"),
        "merchant_txn_count_30d": float(m["merchant_txn_count_30d"]),
        "merchant_fraud_rate_30d": float(m["merchant_fraud_rate_30d"]),
        "merchant_category": txn.merchant_category,
        "country": txn.country,
    }
