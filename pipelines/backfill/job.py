"""The backfill job.

It plays a scenario's events for the last N days through :func:`aggregate_batch`, the very
step the streaming ingest runs, and writes the same offline tables; then pushes each card's
newest row online, writes the labels that had arrived by the end, and computes and materializes
the merchant features. The first model therefore trains on history made by the same code that
will serve it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bottega.errors import ConfigError
from bottega.events import Label, Transaction
from bottega.usecases.fraud.merchants import refresh_merchant_features
from bottega.usecases.fraud.scenario import aligned_end, load_scenario
from bottega.usecases.fraud.simulator import SimulatedEvent, Simulator
from bottega.usecases.fraud.store import FraudFeatureStore, aggregate_batch, newest_per_card
from bottega.usecases.fraud.tables import BACKFILL, Source

log = logging.getLogger(__name__)

CHUNK = 50_000


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill wrote."""

    start: str
    end: str
    transactions: int
    labels: int
    frauds: int
    cards: int
    merchant_rows: int

    def to_dict(self) -> dict[str, object]:
        """The report as plain values."""
        return asdict(self)


def backfill(
    fs: FraudFeatureStore,
    scenario_path: Path,
    *,
    days: float,
    end: datetime | None = None,
    allow_existing: bool = False,
) -> BackfillReport:
    """Write ``days`` of history ending at ``end``.

    By default the history ends at the last moment before now with the scenario's time of day
    (its ``start`` plus whole days), which is where a replay of a scenario laid out like it
    begins: the replay then continues the history without a gap.
    """
    if days <= 0:
        raise ConfigError(f"days must be positive, got {days}")
    # The user's inputs first, before the store is touched.
    scenario = load_scenario(scenario_path)
    end = (end or aligned_end(scenario.start, datetime.now(UTC))).replace(second=0, microsecond=0)
    start = end - timedelta(days=days)
    fs.apply()
    existing = fs.transactions.query("SELECT count(*) AS n FROM t")["n"][0].as_py()
    if existing and not allow_existing:
        raise ConfigError(
            f"the offline store already holds {existing} transactions",
            hint="backfill an empty store (make clean), or pass --allow-existing",
        )
    recovery = fs.recover()
    aggregator = recovery.aggregator

    simulator = Simulator(scenario, start=start, until=end)
    chunk: list[tuple[Transaction, Source]] = []
    oracle: list[SimulatedEvent] = []
    labels: list[tuple[Label, Source]] = []
    newest = {}
    counts = {"transactions": 0, "frauds": 0}

    def flush() -> None:
        result = aggregate_batch(aggregator, chunk)
        fs.write_batch(result)
        for row in newest_per_card(result.rows):
            newest[row.card_id] = row
        fs.write_oracle(
            [str(e.transaction.event_id) for e in oracle],
            [e.fraud_probability for e in oracle],
            [e.pattern for e in oracle],
        )
        counts["transactions"] += len(result.logged)
        chunk.clear()
        oracle.clear()

    event: SimulatedEvent
    for event in simulator.events():
        chunk.append((event.transaction, BACKFILL))
        oracle.append(event)
        counts["frauds"] += int(event.is_fraud)
        label = event.label()
        if label is not None and label.event_time <= end:
            labels.append((label, BACKFILL))
        if len(chunk) >= CHUNK:
            flush()
    if chunk:
        flush()
    for i in range(0, len(labels), CHUNK):
        fs.write_labels(labels[i : i + CHUNK])
    fs.push_online(list(newest.values()))
    merchant_rows = refresh_merchant_features(fs, (start + timedelta(days=1)).date(), end.date())
    report = BackfillReport(
        start=start.isoformat(),
        end=end.isoformat(),
        transactions=counts["transactions"],
        labels=len(labels),
        frauds=counts["frauds"],
        cards=len(newest),
        merchant_rows=merchant_rows,
    )
    log.info("backfill done", extra=report.to_dict())
    return report
