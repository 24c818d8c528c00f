"""The Kafka broker killed (SIGKILL) during a replay, and restarted.

Every producer and consumer must recover on its own: the replay's producer, the model server's
prediction log, the ingest's and the monitor's consumer groups. Nothing the broker acknowledged
may be lost: the test counts event_ids from the replay to the topics and the feature store.
"""

from __future__ import annotations

import time
from datetime import timedelta

from tests.faults.harness import (
    FaultStack,
    group_lag,
    metric_sum,
    read_topic,
    stored_counts,
    wait_until,
)


def test_a_broker_killed_and_restarted_loses_no_acknowledged_event(
    fault_stack: FaultStack,
) -> None:
    kafka = fault_stack.settings.kafka
    serving = fault_stack.settings.serving.url

    def prediction_log(outcome: str) -> float:
        return metric_sum(serving, "bottega_prediction_log_total", outcome=outcome)

    published_before, failed_before = prediction_log("published"), prediction_log("failed")
    with fault_stack.replay(timedelta(minutes=60)) as replay:
        replay.wait_transactions(300)
        fault_stack.kill("kafka")
        down_from = replay.stats.transactions
        # The payments go on while the broker is down: the producers buffer them.
        replay.wait_transactions(down_from + 150)
        played_while_down = replay.stats.transactions - down_from
        restart_s = fault_stack.restart("kafka")
        back = time.monotonic()
        stats = replay.finish()
    played = stats.transactions + stats.lead_in
    transactions = replay.acked("transactions")
    labels = replay.acked("labels")

    # Every consumer group catches up on its own, with no restart of its service.
    lags: list[dict[str, int]] = []

    def caught_up() -> bool:
        lags.append(group_lag(kafka))
        return not any(lags[-1].values())

    try:
        wait_until(caught_up, timeout_s=180, what="consumers caught up")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; messages behind, by group: {lags[-1]}") from None
    caught_up_s = time.monotonic() - back

    # The replay's producer got every transaction through: none refused, none left unanswered.
    assert replay.publisher.failed == {}
    assert len(transactions) == played
    assert len(labels) == stats.labels_sent
    on_topic = {m["event_id"] for m in read_topic(kafka, "transactions")}
    assert transactions <= on_topic

    # The ingest stored each acknowledged transaction and label exactly once.
    stored = stored_counts(fault_stack.store.transactions, transactions)
    assert len(stored) == len(transactions)
    assert set(stored.values()) == {1}
    stored_labels = stored_counts(fault_stack.store.labels, labels)
    assert len(stored_labels) == len(labels)
    assert set(stored_labels.values()) == {1}

    # The model server answered throughout; every prediction the broker acknowledged is on the
    # topic once, and none was given up on: its producer rode out the restart.
    assert stats.predict_errors == 0 and stats.predicted == stats.transactions
    predictions = read_topic(
        kafka, "predictions", keep=lambda m: m["transaction_id"] in transactions
    )
    published = prediction_log("published") - published_before
    failed = prediction_log("failed") - failed_before
    assert len({p["event_id"] for p in predictions}) == len(predictions) == published
    assert failed == 0
    champion = [p["transaction_id"] for p in predictions if p["arm"] == "champion"]
    assert len(set(champion)) == len(champion) == stats.predicted

    fault_stack.figures.record(
        "broker",
        transactions_played=played,
        transactions_acked=len(transactions),
        transactions_stored=len(stored),
        played_while_down=played_while_down,
        labels_acked=len(labels),
        labels_stored=len(stored_labels),
        predictions_answered=stats.predicted,
        predictions_acked=published,
        predictions_on_topic=len(predictions),
        predictions_given_up=failed,
        restart_seconds=round(restart_s, 1),
        consumers_caught_up_seconds=round(caught_up_s, 1),
    )
