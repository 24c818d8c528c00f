"""The ingest killed with SIGKILL during a replay, and restarted.

The offline store must hold every event exactly once, whatever batch was in hand, and the
online aggregates must be the ones the offline raw log gives when recomputed from scratch.
"""

from __future__ import annotations

import time
from datetime import timedelta

from pytest import approx

from tests.faults.harness import FaultStack, group_lag, read_topic, stored_counts, wait_until


def test_an_ingest_killed_mid_stream_stores_every_event_exactly_once(
    fault_stack: FaultStack,
) -> None:
    kafka = fault_stack.settings.kafka
    with fault_stack.replay(timedelta(minutes=60)) as replay:
        replay.wait_transactions(300)
        fault_stack.kill("ingest")
        down_from = replay.stats.transactions
        replay.wait_transactions(down_from + 150)
        played_while_down = replay.stats.transactions - down_from
        restart_s = fault_stack.restart("ingest")
        back = time.monotonic()
        stats = replay.finish()
    transactions = replay.acked("transactions")
    labels = replay.acked("labels")
    assert len(transactions) == stats.transactions + stats.lead_in

    def ingested() -> bool:
        lag = group_lag(kafka)
        return lag["bottega-ingest"] == 0 and lag["bottega-ingest-labels"] == 0

    wait_until(ingested, timeout_s=180, what="the ingest to catch up")
    caught_up_s = time.monotonic() - back

    store = fault_stack.store
    stored = stored_counts(store.transactions, transactions)
    assert len(stored) == len(transactions)
    assert set(stored.values()) == {1}
    # The whole log, not only this replay's part, holds no event twice.
    total, distinct = (
        store.transactions.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM t")
        .to_pylist()[0]
        .values()
    )
    assert total == distinct
    stored_labels = stored_counts(store.labels, labels)
    assert len(stored_labels) == len(labels)
    assert set(stored_labels.values()) == {1}
    label_total, label_distinct = (
        store.labels.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM t")
        .to_pylist()[0]
        .values()
    )
    assert label_total == label_distinct

    # Online, each card this replay touched holds what its raw log gives, recomputed.
    cards = sorted(
        {m["card_id"] for m in read_topic(kafka, "transactions") if m["event_id"] in transactions}
    )
    recomputed, _ = store.rebuild_cards()
    online = store.online_card_rows(cards)
    wrong = []
    for card_id, row in zip(cards, online, strict=True):
        expected = recomputed.current(card_id)
        assert expected is not None
        differ = {
            name: (row[name], value)
            for name, value in expected.features().items()
            if (row[name] != value if isinstance(value, str) else row[name] != approx(value))
        }
        if differ:
            wrong.append((card_id, differ))
    assert wrong == []

    fault_stack.figures.record(
        "ingest",
        transactions_acked=len(transactions),
        transactions_stored=len(stored),
        store_rows=total,
        store_distinct=distinct,
        played_while_down=played_while_down,
        labels_acked=len(labels),
        labels_stored=len(stored_labels),
        cards_checked_online=len(cards),
        cards_wrong_online=len(wrong),
        restart_seconds=round(restart_s, 1),
        caught_up_seconds=round(caught_up_s, 1),
    )
