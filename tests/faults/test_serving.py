"""The model server killed with SIGKILL during a replay, and brought back by the stack runner.

The local stack runner does not supervise: it brings a dead service back when ``bottega up``
runs again, which is what this test does, as an operator would. While the server starts,
readiness must hold traffic: ``/readyz`` answers 503, and so does ``/predict``, until the
champion is loaded. The payments made meanwhile still reach the feature store.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from tests.faults.harness import (
    FaultStack,
    group_lag,
    read_topic,
    stored_counts,
    wait_for,
    wait_until,
)


@dataclass
class ReadinessProbe:
    """Polls ``/readyz`` and ``/predict`` on a thread, noting each status (None: no answer)."""

    url: str
    body: dict[str, object]
    seen: list[tuple[float, int | None, int | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ReadinessProbe:
        self._thread = threading.Thread(target=self._run, name="readiness-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _status(self, client: httpx.Client, method: str, path: str) -> int | None:
        try:
            if method == "GET":
                return client.get(path).status_code
            return client.post(path, json=self.body).status_code
        except httpx.ConnectError:
            return None  # nothing listens yet
        except httpx.TimeoutException:
            return 0  # the connection waits in the socket's backlog: held

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while not self._stop.wait(0.1):
                ready = self._status(client, "GET", "/readyz")
                predict = self._status(client, "POST", "/predict")
                self.seen.append((time.monotonic(), ready, predict))


def test_a_killed_model_server_is_brought_back_and_holds_traffic_until_loaded(
    fault_stack: FaultStack,
) -> None:
    settings = fault_stack.settings
    with fault_stack.replay(timedelta(minutes=60)) as replay:
        replay.wait_transactions(300)
        # The probe's body: a payment this replay has made.
        transaction = read_topic(settings.kafka, "transactions")[-1]
        killed = time.monotonic()
        fault_stack.kill("serving")
        # Its workers, in sessions of their own, see their parent gone and exit.
        workers_gone_s = fault_stack.wait_gone("serving")
        answered_before = replay.stats.predicted
        probe = ReadinessProbe(settings.serving.url, transaction).start()
        try:
            restart_s = fault_stack.restart("serving")
            # Until every worker has loaded the champion and the probe's last ten rounds were
            # all answered: ready, and scored.
            wait_for(
                lambda: (
                    len(probe.seen) >= 10
                    and all(r == 200 and p == 200 for _, r, p in probe.seen[-10:])
                ),
                timeout_s=60,
                what="the probe to see it ready and scoring",
            )
        finally:
            probe.stop()
        stats = replay.finish()

    # Until a worker had loaded the champion, no request was answered but with 503: each was
    # refused (nothing listening), held (waiting in the socket's backlog) or told 503 ...
    first_up = next(i for i, (_, r, p) in enumerate(probe.seen) if 200 in (r, p))
    before = probe.seen[:first_up]
    assert before, "the probe saw it ready at once: it was never down"
    assert {ready for _, ready, _ in before} <= {None, 0, 503}
    assert {predict for _, _, predict in before} <= {None, 0, 503}
    # ... and after, each worker held its share (503, or waiting) until its own model was
    # loaded, and none ever answered anything else (no 500, no score without a model).
    assert {ready for _, ready, _ in probe.seen[first_up:]} <= {200, 503, 0}
    assert {predict for _, _, predict in probe.seen[first_up:]} <= {200, 503, 0}
    ready_after_s = probe.seen[first_up][0] - killed
    held_after_first_ready = sum(1 for _, r, p in probe.seen[first_up:] if (r, p) != (200, 200))

    # The replay's requests failed only while it was down; it answered again after.
    assert stats.predict_errors > 0
    assert stats.predicted + stats.predict_errors == stats.transactions
    assert stats.predicted > answered_before
    transactions = replay.acked("transactions")
    assert len(transactions) == stats.transactions + stats.lead_in
    predictions = read_topic(
        settings.kafka, "predictions", keep=lambda m: m["transaction_id"] in transactions
    )
    champion = [p["transaction_id"] for p in predictions if p["arm"] == "champion"]
    logged = set(champion)
    # A transaction is logged twice only when the replay sent it again: a request whose
    # connection dropped at the kill (scored and logged, unanswered) is retried once, and a worker
    # not yet gone may answer it. The monitor keys on the transaction id, so it counts it once.
    assert len(champion) - len(logged) <= stats.predict_retries
    # Every answer was logged. A request in flight when the server died may have been scored
    # and logged without its answer reaching the caller: at most one per failed request.
    assert stats.predicted <= len(logged) <= stats.predicted + stats.predict_errors

    # Every payment made meanwhile reached the feature store, scored or not.
    wait_until(
        lambda: group_lag(settings.kafka)["bottega-ingest"] == 0, timeout_s=120, what="ingest"
    )
    stored = stored_counts(fault_stack.store.transactions, transactions)
    assert len(stored) == len(transactions) and set(stored.values()) == {1}

    fault_stack.figures.record(
        "serving",
        transactions_played=stats.transactions,
        answered=stats.predicted,
        refused_while_down=stats.predict_errors,
        predictions_logged=len(logged),
        predictions_logged_twice=len(champion) - len(logged),
        requests_retried=stats.predict_retries,
        logged_for_failed_requests=len(logged) - stats.predicted,
        transactions_stored=len(stored),
        probes_before_ready=len(before),
        probes_refused=sum(1 for _, r, _ in before if r is None),
        probes_held=sum(1 for _, r, _ in before if r == 0),
        probes_503=sum(1 for _, r, _ in before if r == 503),
        workers_gone_after_seconds=round(workers_gone_s, 1),
        restart_seconds=round(restart_s, 1),
        ready_after_kill_seconds=round(ready_after_s, 1),
        probes_503_after_first_worker_ready=held_after_first_ready,
    )
