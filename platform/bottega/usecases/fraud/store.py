"""The fraud use case's side of the feature store: its tables, its Feast objects, and the one
micro-batch step that the streaming ingest and the backfill share.

Write order makes a micro-batch atomic on disk. The card rows go first and the raw transactions
second, under the same file stem: a transactions file is the batch's commit record. After a kill,
:meth:`FraudFeatureStore.recover` deletes any card file whose transactions file never landed,
rebuilds the aggregates from the raw log, and pushes every card's newest row online again. The
Kafka offsets are committed only after all that, and an event_id already in the rebuilt state is
dropped, so a batch consumed twice is written once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from feast import FeatureStore
from feast.data_source import PushMode

from bottega.events import Label, Transaction
from bottega.features.store import build_store, offline_dir
from bottega.features.tables import ParquetTable, new_stem
from bottega.settings import BottegaSettings
from bottega.usecases.fraud.aggregates import (
    RETENTION_S,
    CardAggregator,
    CardRow,
    CardState,
    Outcome,
)
from bottega.usecases.fraud.features.definitions import (
    CARD_PUSH_SOURCE,
    FraudFeatureRepo,
    fraud_feature_repo,
)
from bottega.usecases.fraud.tables import (
    CARD_FEATURES,
    LABELS,
    MERCHANT_FEATURES,
    ORACLE,
    TRANSACTIONS,
    Source,
    card_features_table,
    labels_table,
    oracle_table,
    transactions_table,
)

log = logging.getLogger(__name__)

# How far back, before the newest logged event, a restart replays the raw log into the state:
# the longest window plus a day of slack for late events.
REBUILD_SPAN = timedelta(seconds=RETENTION_S) + timedelta(days=1)


@dataclass
class BatchResult:
    """What one micro-batch produced."""

    rows: list[CardRow] = field(default_factory=list)
    logged: list[tuple[Transaction, Source]] = field(default_factory=list)
    outcomes: Counter[Outcome] = field(default_factory=Counter)


def aggregate_batch(
    aggregator: CardAggregator, items: Sequence[tuple[Transaction, Source]]
) -> BatchResult:
    """Apply a micro-batch to the card state: the step both the ingest and the backfill run.

    The batch is applied in event-time order (ties by event_id), so disorder within a batch
    never makes an event late. Each applied or late event yields one card row and one raw-log
    row; a duplicate or too-late event yields neither and is only counted.
    """
    result = BatchResult()
    ordered = sorted(items, key=lambda item: (item[0].event_time, str(item[0].event_id)))
    for txn, source in ordered:
        outcome, row = aggregator.apply(txn)
        result.outcomes[outcome] += 1
        if row is not None:
            result.rows.append(row)
            result.logged.append((txn, source))
    return result


def newest_per_card(rows: Sequence[CardRow]) -> list[CardRow]:
    """Each card's last row: the only one the online store needs (it keeps the last write)."""
    newest: dict[str, CardRow] = {}
    for row in rows:
        newest[row.card_id] = row
    return list(newest.values())


@dataclass
class Recovery:
    """The state a restarted ingest resumes from."""

    aggregator: CardAggregator
    label_ids: set[str]
    replayed: int
    orphans_removed: int
    cards_pushed: int


class FraudFeatureStore:
    """The fraud tables and Feast objects over one Feast store."""

    def __init__(self, settings: BottegaSettings, store: FeatureStore | None = None) -> None:
        root = offline_dir(settings)
        self.transactions = ParquetTable(root, "transactions", TRANSACTIONS)
        self.card_features = ParquetTable(root, "card_features", CARD_FEATURES)
        self.labels = ParquetTable(root, "labels", LABELS)
        self.merchant_features = ParquetTable(root, "merchant_features", MERCHANT_FEATURES)
        self.oracle = ParquetTable(root, "oracle", ORACLE)
        self.repo: FraudFeatureRepo = fraud_feature_repo(
            self.card_features.glob, self.merchant_features.glob
        )
        self.store = store or build_store(settings)

    @property
    def tables(self) -> tuple[ParquetTable, ...]:
        """Every offline table."""
        return (
            self.transactions,
            self.card_features,
            self.labels,
            self.merchant_features,
            self.oracle,
        )

    def apply(self) -> None:
        """Create the tables and register the Feast objects (idempotent)."""
        for table in self.tables:
            table.ensure()
        self.store.apply(self.repo.objects())

    # -- writes ----------------------------------------------------------------------------

    def write_batch(self, result: BatchResult) -> str | None:
        """Append a micro-batch offline: card rows first, then the raw log as its commit record."""
        if not result.logged:
            return None
        stem = new_stem()
        now = datetime.now(UTC)
        self.card_features.write(card_features_table(result.rows, now), stem)
        txns = [txn for txn, _ in result.logged]
        sources = [source for _, source in result.logged]
        self.transactions.write(transactions_table(txns, sources, now), stem)
        return stem

    def push_online(self, rows: Sequence[CardRow]) -> int:
        """Push each card's newest row online through the card view's push source."""
        newest = newest_per_card(rows)
        if newest:
            self._push(card_features_table(newest))
        return len(newest)

    def _push(self, table: pa.Table) -> None:
        frame = table.drop_columns(["event_id"]).to_pandas()
        self.store.push(CARD_PUSH_SOURCE, frame, to=PushMode.ONLINE)

    def write_labels(self, labels: Sequence[tuple[Label, Source]]) -> str | None:
        """Append labels offline, with the time each arrived."""
        if not labels:
            return None
        table = labels_table([lb for lb, _ in labels], [s for _, s in labels])
        return self.labels.write(table).stem

    def write_oracle(
        self, event_ids: Sequence[str], probabilities: Sequence[float], patterns: Sequence[str]
    ) -> str | None:
        """Append the simulator's true fraud probabilities (the backfill's side table)."""
        if not event_ids:
            return None
        return self.oracle.write(oracle_table(event_ids, probabilities, patterns)).stem

    def oracle_scores(self, event_ids: Sequence[str]) -> dict[str, float]:
        """The oracle's probability of each of ``event_ids`` that has one."""
        wanted = set(event_ids)
        rows = self.oracle.query(
            "SELECT event_id, any_value(fraud_probability) AS p FROM t GROUP BY event_id"
        ).to_pylist()
        return {r["event_id"]: r["p"] for r in rows if r["event_id"] in wanted}

    # -- recovery --------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Make the tables consistent after a kill and rebuild the ingest's state from them."""
        for table in self.tables:
            table.ensure()
            table.clean_leftovers()
        orphans = self.card_features.stems() - self.transactions.stems()
        for stem in orphans:
            log.warning("removing a card file whose batch never committed", extra={"stem": stem})
            self.card_features.remove(stem)

        aggregator, replayed = self.rebuild_cards()

        label_ids = set(
            self.labels.query("SELECT DISTINCT event_id FROM t")["event_id"].to_pylist()
        )
        latest = self.latest_card_rows()
        if latest.num_rows:
            self._push(latest)
        log.info(
            "recovered",
            extra={"replayed": replayed, "orphans": len(orphans), "cards": latest.num_rows},
        )
        return Recovery(aggregator, label_ids, replayed, len(orphans), latest.num_rows)

    def rebuild_cards(self) -> tuple[CardAggregator, int]:
        """Every card's state, rebuilt from the raw log; and how many rows it replayed.

        Read-only: the ingest's recovery uses it after cleaning up, and the replay tool uses it
        so that simulated cards carry on from the history the platform has already seen.
        """
        aggregator = CardAggregator()
        # Each card's own recent history: the span is measured back from that card's newest
        # event, not the log's, since cards' event times need not move together.
        log_rows = self.transactions.query(
            "SELECT * FROM t QUALIFY event_timestamp > "
            "max(event_timestamp) OVER (PARTITION BY card_id) - to_microseconds(?) "
            "ORDER BY event_timestamp, event_id",
            [int(REBUILD_SPAN.total_seconds() * 1_000_000)],
        )
        replayed = 0
        for record in log_rows.to_pylist():
            aggregator.apply(transaction_from_row(record))
            replayed += 1
        self._seed_devices(aggregator)
        return aggregator, replayed

    def newest_transaction_time(self) -> datetime | None:
        """Event time of the newest stored transaction, or None when there is none."""
        return _newest(self.transactions, "event_timestamp")

    def newest_label_time(self) -> datetime | None:
        """When the newest stored label arrived (its event time), or None when there is none."""
        return _newest(self.labels, "label_time")

    def _seed_devices(self, aggregator: CardAggregator) -> None:
        # A card quiet for longer than the replayed span keeps its last device, so the next
        # transaction's device_changed matches what the stored row says.
        rows = self.latest_card_rows()
        for card_id, device in zip(
            rows["card_id"].to_pylist(), rows["last_device_id"].to_pylist(), strict=True
        ):
            state = aggregator.cards.get(card_id)
            if state is None:
                state = aggregator.cards[card_id] = CardState(card_id)
            if not state.times and device:
                state.last_device_id = device

    # -- reads -----------------------------------------------------------------------------

    def latest_card_rows(self) -> pa.Table:
        """Each card's newest row in the offline history (a correction wins a tie)."""
        return self.card_features.query(
            "SELECT * FROM t QUALIFY row_number() OVER "
            "(PARTITION BY card_id ORDER BY event_timestamp DESC, created_timestamp DESC) = 1"
        )

    def online_card_rows(self, card_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The card view's online values for ``card_ids`` (None values for unknown cards)."""
        response = self.store.get_online_features(
            features=[f"{self.repo.card_view.name}:{f.name}" for f in self.repo.card_view.features],
            entity_rows=[{"card_id": card_id} for card_id in card_ids],
        ).to_dict()
        return [
            {name: values[i] for name, values in response.items()} for i in range(len(card_ids))
        ]


def _newest(table: ParquetTable, column: str) -> datetime | None:
    newest = table.query(f"SELECT max({column}) AS m FROM t")["m"][0]
    if not newest.is_valid:
        return None
    value: datetime = newest.as_py()
    return value


def transaction_from_row(record: dict[str, Any]) -> Transaction:
    """A transaction from a row of the raw log.

    The rows were validated when they were ingested, so this constructs without re-validating:
    rebuilding the state from a week of history must be fast.
    """
    return Transaction.model_construct(
        event_id=record["event_id"],
        event_time=record["event_timestamp"],
        card_id=record["card_id"],
        merchant_id=record["merchant_id"],
        amount=record["amount"],
        currency=record["currency"],
        merchant_category=record["merchant_category"],
        country=record["country"],
        card_country=record["card_country"],
        channel=record["channel"],
        device_id=record["device_id"],
    )
