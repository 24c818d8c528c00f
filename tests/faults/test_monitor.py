"""The monitor killed with SIGKILL during a replay, and restarted.

Its windows live in memory, so the windows open at the kill lose what it had read. It must
resume from its committed offsets, read each message after them exactly once, and be right
again within one window: every window that starts after the kill holds every champion
prediction of its span, counted against the predictions topic.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx
from kafka import KafkaAdminClient

from tests.faults.harness import FaultStack, group_lag, metric_sum, read_topic, wait_for, wait_until

GROUP = "bottega-monitor"


def committed_total(bootstrap: str) -> int:
    """The offsets the monitor's group has committed, summed over its partitions."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="faults-offsets")
    try:
        return sum(
            max(om.offset, 0) for om in admin.list_group_offsets({GROUP: None})[GROUP].values()
        )
    finally:
        admin.close()


def reports(url: str) -> list[dict[str, Any]]:
    """The monitor's window summaries."""
    body: list[dict[str, Any]] = httpx.get(f"{url}/reports", timeout=10).json()
    return body


def test_a_monitor_killed_and_restarted_resumes_and_is_right_within_one_window(
    fault_stack: FaultStack,
) -> None:
    settings = fault_stack.settings
    kafka, monitor = settings.kafka, settings.monitor
    with fault_stack.replay(timedelta(hours=2)) as replay:
        replay.wait_transactions(600)
        fault_stack.kill("monitor")
        assert replay.stats.sim_now is not None
        killed_sim = replay.stats.sim_now
        committed_at_kill = committed_total(kafka.bootstrap_servers)
        restart_s = fault_stack.restart("monitor")
        stats = replay.finish()
    assert stats.predict_errors == 0
    wait_until(lambda: group_lag(kafka)[GROUP] == 0, timeout_s=180, what="the monitor to catch up")

    # It resumed from its committed offsets: it read exactly the messages after them.
    consumed = metric_sum(monitor.url, "bottega_monitor_events_total")
    after_kill = committed_total(kafka.bootstrap_servers) - committed_at_kill
    assert consumed == after_kill > 0

    truth: dict[str, datetime] = {}
    for p in read_topic(kafka, "predictions", keep=lambda m: m["arm"] == "champion"):
        truth[p["transaction_id"]] = datetime.fromisoformat(p["event_time"])
    newest = max(truth.values())
    spec_step, lateness = timedelta(minutes=10), timedelta(minutes=5)
    last_end = datetime.fromtimestamp(
        (newest - lateness).timestamp() // spec_step.total_seconds() * spec_step.total_seconds(),
        newest.tzinfo,
    )

    def last_window_analyzed() -> list[dict[str, Any]]:
        done = reports(monitor.url)
        ends = {datetime.fromisoformat(r["window_end"]) for r in done}
        return done if last_end in ends else []

    windows = wait_for(last_window_analyzed, timeout_s=120, what="the last window analyzed")
    assert isinstance(windows, list)

    def expected(r: dict[str, Any]) -> int:
        start = datetime.fromisoformat(r["window_start"])
        end = datetime.fromisoformat(r["window_end"])
        return sum(1 for t in truth.values() if start <= t < end)

    after = [r for r in windows if datetime.fromisoformat(r["window_start"]) >= killed_sim]
    straddling = [
        r
        for r in windows
        if datetime.fromisoformat(r["window_start"]) < killed_sim
        and datetime.fromisoformat(r["window_end"]) > killed_sim
    ]
    assert len(after) >= 3, [r["window_start"] for r in windows]
    counted = Counter({r["window_start"]: r["rows"] - expected(r) for r in after})
    assert set(counted.values()) == {0}, counted
    first_whole = min(datetime.fromisoformat(r["window_start"]) for r in after)
    assert first_whole - killed_sim <= spec_step

    fault_stack.figures.record(
        "monitor",
        messages_after_committed_offsets=after_kill,
        messages_consumed_after_restart=consumed,
        windows_after_kill=len(after),
        rows_after_kill=sum(r["rows"] for r in after),
        rows_expected_after_kill=sum(expected(r) for r in after),
        straddling_windows_missing_rows=[expected(r) - r["rows"] for r in straddling],
        restart_seconds=round(restart_s, 1),
        whole_again_after_sim_minutes=(first_whole - killed_sim).total_seconds() / 60,
        replay_transactions=stats.transactions,
    )
