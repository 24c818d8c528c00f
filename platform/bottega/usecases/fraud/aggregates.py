"""Card aggregates: the one aggregation function that the ingest, the backfill and the
simulator's oracle all use.

A :class:`CardState` holds one card's recent transactions. :meth:`CardState.apply` adds a
transaction and returns the card's feature row *as of its latest transaction*, the row that the
feature store keeps for the card. Serving reads that row before the next transaction arrives,
and training reads, through a point-in-time join, the row stamped strictly before its own event:
both see the aggregates as they stood before the transaction being scored.

Windows end at the row's timestamp ``T`` and are open at the start: ``(T - w, T]``.

Out of order and duplicate events are handled on purpose:

- an ``event_id`` seen before (within the retention) is dropped: it never counts twice;
- an event older than the card's latest one but within the retention is inserted in event-time
  order, and the row it yields is a correction stamped at the card's latest time, so that the
  newest row always describes the newest state (the online store is last-write-wins);
- an event older than the retention (7 days) is dropped as too late.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bottega.events import Transaction

HOUR = 3600.0
DAY = 24 * HOUR
RETENTION_S = 7 * DAY

# The numeric aggregates a card row carries, in the feature view's order.
CARD_AGGREGATES: tuple[str, ...] = (
    "txn_count_1h",
    "amount_sum_1h",
    "txn_count_24h",
    "amount_sum_24h",
    "txn_count_7d",
    "amount_mean_7d",
    "distinct_merchants_24h",
    "last_txn_epoch_s",
)
# Everything a card row carries: the aggregates and the latest device.
CARD_FEATURES: tuple[str, ...] = (*CARD_AGGREGATES, "last_device_id")


class Outcome(StrEnum):
    """What :meth:`CardState.apply` did with a transaction."""

    APPLIED = "applied"
    LATE = "late"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"


@dataclass(frozen=True)
class CardRow:
    """A card's aggregates as of ``as_of``: one row of the card feature view."""

    card_id: str
    as_of: datetime
    event_id: str
    txn_count_1h: int
    amount_sum_1h: float
    txn_count_24h: int
    amount_sum_24h: float
    txn_count_7d: int
    amount_mean_7d: float
    distinct_merchants_24h: int
    last_txn_epoch_s: float
    last_device_id: str

    def features(self) -> dict[str, Any]:
        """The row's feature values, by feature name."""
        return {
            "txn_count_1h": self.txn_count_1h,
            "amount_sum_1h": self.amount_sum_1h,
            "txn_count_24h": self.txn_count_24h,
            "amount_sum_24h": self.amount_sum_24h,
            "txn_count_7d": self.txn_count_7d,
            "amount_mean_7d": self.amount_mean_7d,
            "distinct_merchants_24h": self.distinct_merchants_24h,
            "last_txn_epoch_s": self.last_txn_epoch_s,
            "last_device_id": self.last_device_id,
        }


@dataclass
class CardState:
    """One card's transactions within the retention, sorted by (event time, event id)."""

    card_id: str
    times: list[float] = field(default_factory=list)
    keys: list[tuple[float, str]] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    merchants: list[str] = field(default_factory=list)
    # prefix[i] = sum(amounts[:i]): window sums by two bisections.
    prefix: list[float] = field(default_factory=lambda: [0.0])
    seen: set[str] = field(default_factory=set)
    last_device_id: str = ""

    @property
    def latest(self) -> float | None:
        """The event time of the card's newest transaction, in epoch seconds."""
        return self.times[-1] if self.times else None

    def apply(self, txn: Transaction) -> tuple[Outcome, CardRow | None]:
        """Add ``txn``; return what happened and the card's new row (None when dropped)."""
        event_id = str(txn.event_id)
        if event_id in self.seen:
            return Outcome.DUPLICATE, None
        ts = txn.event_time.timestamp()
        latest = self.latest
        if latest is not None and ts <= latest - RETENTION_S:
            return Outcome.TOO_LATE, None
        self.seen.add(event_id)
        key = (ts, event_id)
        if latest is None or key > self.keys[-1]:
            self.times.append(ts)
            self.keys.append(key)
            self.amounts.append(txn.amount)
            self.merchants.append(txn.merchant_id)
            self.prefix.append(self.prefix[-1] + txn.amount)
            if txn.device_id:
                self.last_device_id = txn.device_id
            outcome = Outcome.APPLIED
        else:
            i = bisect.bisect(self.keys, key)
            self.times.insert(i, ts)
            self.keys.insert(i, key)
            self.amounts.insert(i, txn.amount)
            self.merchants.insert(i, txn.merchant_id)
            self._rebuild_prefix()
            outcome = Outcome.LATE
        self._expire()
        newest_id = self.keys[-1][1]
        return outcome, self.row(newest_id)

    def row(self, event_id: str) -> CardRow:
        """The aggregates as of the newest transaction."""
        end = self.times[-1]
        n = len(self.times)
        i1 = bisect.bisect_right(self.times, end - HOUR)
        i24 = bisect.bisect_right(self.times, end - DAY)
        i7 = bisect.bisect_right(self.times, end - RETENTION_S)
        count_7d = n - i7
        return CardRow(
            card_id=self.card_id,
            as_of=datetime.fromtimestamp(end, UTC),
            event_id=event_id,
            txn_count_1h=n - i1,
            amount_sum_1h=self.prefix[n] - self.prefix[i1],
            txn_count_24h=n - i24,
            amount_sum_24h=self.prefix[n] - self.prefix[i24],
            txn_count_7d=count_7d,
            amount_mean_7d=(self.prefix[n] - self.prefix[i7]) / count_7d if count_7d else 0.0,
            distinct_merchants_24h=len(set(self.merchants[i24:])),
            last_txn_epoch_s=end,
            last_device_id=self.last_device_id,
        )

    def _expire(self) -> None:
        # Drop what no window can see any more, in chunks, so the cost stays amortised O(1).
        cutoff = self.times[-1] - RETENTION_S
        drop = bisect.bisect_right(self.times, cutoff)
        if drop and (drop >= 64 or drop * 2 >= len(self.times)):
            for _, event_id in self.keys[:drop]:
                self.seen.discard(event_id)
            del self.times[:drop], self.keys[:drop], self.amounts[:drop], self.merchants[:drop]
            self._rebuild_prefix()

    def _rebuild_prefix(self) -> None:
        prefix = [0.0]
        for amount in self.amounts:
            prefix.append(prefix[-1] + amount)
        self.prefix = prefix


class CardAggregator:
    """Every card's state; the single entry point for computing card rows."""

    def __init__(self) -> None:
        self.cards: dict[str, CardState] = {}

    def apply(self, txn: Transaction) -> tuple[Outcome, CardRow | None]:
        """Add one transaction to its card's state."""
        state = self.cards.get(txn.card_id)
        if state is None:
            state = self.cards[txn.card_id] = CardState(txn.card_id)
        return state.apply(txn)

    def current(self, card_id: str) -> CardRow | None:
        """The card's row as of its newest transaction, or None for a card never seen."""
        state = self.cards.get(card_id)
        if state is None or not state.times:
            return None
        return state.row(state.keys[-1][1])


def aggregate(transactions: list[Transaction]) -> list[tuple[Outcome, CardRow | None]]:
    """Run a list of transactions, in the order given, through a fresh aggregator."""
    aggregator = CardAggregator()
    return [aggregator.apply(txn) for txn in transactions]
