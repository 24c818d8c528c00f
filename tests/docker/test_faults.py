"""Faults in containers, counted end to end as the local fault tests count them.

- The model server's container crashes during a replay: its main process is killed with
  SIGKILL, as the kernel's out-of-memory killer would, and every process in the container dies
  with it. Its restart policy brings it back; every request that was answered is logged. (``docker
  kill`` itself is an operator's stop: Docker suspends the restart policy after it.)
- The broker's container is killed with ``docker kill`` during a replay and started again: no
  event the broker acknowledged is lost.

The replay and the counting run inside the stack, in the ``cli`` container (tests/docker/inside.py):
Kafka and the feature store's backends are not published on the host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.docker.conftest import DockerStack
from tests.faults.counting import metric_sum
from tests.waiting import wait_for


@contextmanager
def replay_inside(stack: DockerStack, out: Path, minutes: float) -> Iterator[subprocess.Popen[str]]:
    """The recording replay, playing in the cli container; its process, waited for on exit."""
    process = stack.inside("replay", "--out", "/out", "--minutes", str(minutes), out=out)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.wait(timeout=600)


def progress(out: Path) -> dict[str, Any]:
    path = out / "progress.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wait_played(process: subprocess.Popen[str], out: Path, transactions: int) -> None:
    def played() -> bool:
        assert process.poll() is None, (out / "inside.log").read_text()[-3000:]
        return int(progress(out).get("transactions", 0)) >= transactions

    wait_for(played, timeout_s=300, what=f"{transactions} transactions played", every_s=0.5)


def log_pending(stack: DockerStack) -> float:
    """Predictions the model server has queued for Kafka and not yet had an outcome for."""
    url = stack.settings.serving.url
    queued = metric_sum(url, "bottega_prediction_log_total", outcome="queued")
    republished = metric_sum(url, "bottega_prediction_log_total", outcome="republished")
    settled = sum(
        metric_sum(url, "bottega_prediction_log_total", outcome=outcome)
        for outcome in ("published", "failed")
    )
    return queued + republished - settled


def counted(stack: DockerStack, out: Path) -> dict[str, Any]:
    """What the probe counts inside the stack, once the model server's prediction log has
    delivered everything and the ingest has caught up."""
    wait_for(
        lambda: log_pending(stack) == 0,
        timeout_s=180,
        what="the model server's prediction log to deliver",
        every_s=1,
    )

    def caught_up() -> dict[str, Any] | None:
        probe = stack.inside("count", "--out", "/out", out=out)
        assert probe.wait(timeout=300) == 0, (out / "inside.log").read_text()[-3000:]
        counts: dict[str, Any] = json.loads((out / "count.json").read_text())
        return counts if counts["lag"]["bottega-ingest"] == 0 else None

    result: dict[str, Any] = wait_for(
        caught_up, timeout_s=240, what="the ingest to catch up", every_s=5
    )  # type: ignore[assignment]
    return result


def container(stack: DockerStack, name: str) -> dict[str, Any]:
    return stack.containers()[name]


def test_a_crashed_model_server_is_restarted_by_its_policy_and_every_answer_is_logged(
    docker_stack: DockerStack, tmp_path: Path
) -> None:
    out = tmp_path / "serving"
    before = container(docker_stack, "serving")
    with replay_inside(docker_stack, out, minutes=60) as process:
        wait_played(process, out, 300)
        # SIGKILL to the container's main process: the container dies whole, as on an OOM kill.
        os.kill(before["State"]["Pid"], signal.SIGKILL)
        wait_for(
            lambda: container(docker_stack, "serving")["RestartCount"] > before["RestartCount"],
            timeout_s=60,
            what="the restart policy to start the model server again",
        )
        wait_for(
            lambda: (
                container(docker_stack, "serving")["State"].get("Health", {}).get("Status")
                == "healthy"
            ),
            timeout_s=240,
            what="the restarted model server to be healthy",
            every_s=1,
        )
        assert process.wait(timeout=600) == 0, (out / "inside.log").read_text()[-3000:]
    played = json.loads((out / "replay.json").read_text())
    stats = played["stats"]
    # The replay's requests failed only while it was down; it answered before and after.
    assert stats["predict_errors"] > 0
    assert stats["predicted"] + stats["predict_errors"] == stats["transactions"]
    counts = counted(docker_stack, out)
    champion = [p["transaction_id"] for p in counts["predictions"] if p["arm"] == "champion"]
    logged = set(champion)
    # Every answer was logged, those the crash caught in the prediction log's queue too (the
    # next worker published them from the journal). A request in flight at the crash may have
    # been logged without its answer reaching the caller: at most one per failed request.
    assert stats["predicted"] <= len(logged) <= stats["predicted"] + stats["predict_errors"]
    # A prediction appears twice only as the same event (its own event_id, published again
    # from the journal), or because the replay sent its request again.
    events = {p["event_id"] for p in counts["predictions"] if p["arm"] == "champion"}
    assert len(events) - len(logged) <= stats["predict_retries"]
    # The restarted worker found the dead one's journal and published it again (the last
    # second's predictions, delivered or not).
    republished = metric_sum(
        docker_stack.settings.serving.url, "bottega_prediction_log_total", outcome="republished"
    )
    assert republished >= 1
    # Every payment made meanwhile reached the feature store once, scored or not.
    transactions = played["acked"]["transactions"]
    assert len(transactions) == stats["transactions"] + stats["lead_in"]
    assert counts["transactions_stored"] == counts["transactions_stored_once"] == len(transactions)
    docker_stack.record(
        "serving_crash",
        transactions_played=stats["transactions"],
        answered=stats["predicted"],
        refused_while_down=stats["predict_errors"],
        predictions_logged=len(logged),
        logged_for_failed_requests=len(logged) - stats["predicted"],
        transactions_stored=counts["transactions_stored"],
        restarts=container(docker_stack, "serving")["RestartCount"] - before["RestartCount"],
        # What the restarted worker published from the dead one's journal.
        republished_from_journal=republished,
    )


def test_a_killed_broker_loses_no_acknowledged_event(
    docker_stack: DockerStack, tmp_path: Path
) -> None:
    out = tmp_path / "kafka"
    moments: dict[str, float] = {}
    with replay_inside(docker_stack, out, minutes=60) as process:
        wait_played(process, out, 300)
        moments["kill"] = time.monotonic()
        killed = docker_stack.compose("kill", "kafka", timeout_s=60)
        assert killed.returncode == 0, killed.stderr
        assert container(docker_stack, "kafka")["State"]["Status"] == "exited"
        down_from = int(progress(out)["transactions"])
        # Ten seconds down. The payments go on while the producers can buffer them; a producer
        # that must first learn a topic's partitions again waits for the broker (kafka-python
        # gives it 60 s) and the replay waits with it.
        time.sleep(10)
        assert process.poll() is None, (out / "inside.log").read_text()[-3000:]
        played_while_down = int(progress(out)["transactions"]) - down_from
        started = moments["start"] = time.monotonic()
        again = docker_stack.compose("start", "kafka", timeout_s=120)
        assert again.returncode == 0, again.stderr
        wait_for(
            lambda: (
                container(docker_stack, "kafka")["State"].get("Health", {}).get("Status")
                == "healthy"
            ),
            timeout_s=180,
            what="the broker to be healthy again",
            every_s=1,
        )
        restart_s = time.monotonic() - started
        moments["healthy"] = time.monotonic()
        since_kill = {k: round(v - moments["kill"], 1) for k, v in moments.items()}
        assert process.wait(timeout=600) == 0, (
            f"seconds since the kill: {since_kill}\n" + (out / "inside.log").read_text()[-3000:]
        )
    played = json.loads((out / "replay.json").read_text())
    stats = played["stats"]
    transactions, labels = played["acked"]["transactions"], played["acked"]["labels"]
    # The replay's producer got every event through: none refused, none left unanswered.
    assert played["failed"] == {}
    assert len(transactions) == stats["transactions"] + stats["lead_in"]
    assert len(labels) == stats["labels_sent"]
    counts = counted(docker_stack, out)
    assert counts["transactions_on_topic"] == len(transactions)
    # The ingest stored each acknowledged transaction and label exactly once.
    assert counts["transactions_stored"] == counts["transactions_stored_once"] == len(transactions)
    assert counts["labels_stored"] == counts["labels_stored_once"] == len(labels)
    # The model server answered throughout, and logged every answer once.
    assert stats["predict_errors"] == 0 and stats["predicted"] == stats["transactions"]
    champion = [p["transaction_id"] for p in counts["predictions"] if p["arm"] == "champion"]
    assert len(set(champion)) == stats["predicted"]
    docker_stack.record(
        "broker_kill",
        transactions_played=stats["transactions"] + stats["lead_in"],
        transactions_acked=len(transactions),
        transactions_stored=counts["transactions_stored"],
        labels_acked=len(labels),
        labels_stored=counts["labels_stored"],
        predictions_answered=stats["predicted"],
        predictions_on_topic=len(set(champion)),
        played_while_down=played_while_down,
        healthy_seconds_after_start=round(restart_s, 1),
        seconds_since_kill=since_kill,
    )
