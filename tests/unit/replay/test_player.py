"""The replay player with a fake bus and a fake model server (httpx's MockTransport)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bottega.events import Label, Transaction
from bottega.replay.player import Player, ReplayOptions, ReplayStats, request_body
from bottega.replay.session import aligned_start
from bottega.usecases.fraud.scenario import aligned_end
from bottega.usecases.fraud.simulator import SimulatedEvent

T0 = datetime(2025, 3, 2, 18, tzinfo=UTC)


class FakeBus:
    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log
        self.flushed: float | None = None  # the timeout of the last flush

    def publish(self, event: Any, *, topic: str | None = None) -> None:
        kind = "label" if isinstance(event, Label) else "txn"
        self.log.append((kind, str(event.transaction_id if kind == "label" else event.event_id)))

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = timeout


def event(
    i: int, *, minutes: float, label_after: float | None = 30, fraud: bool = False, phase: str = "a"
) -> SimulatedEvent:
    t = T0 + timedelta(minutes=minutes)
    txn = Transaction(
        event_time=t,
        card_id=f"c{i}",
        merchant_id="m1",
        amount=10.0 + i,
        merchant_category="grocery",
        country="DE",
        card_country="DE",
    )
    label_time = None if label_after is None else t + timedelta(minutes=label_after)
    return SimulatedEvent(txn, 0.1, fraud, label_time, "normal", phase)


def server(log: list[tuple[str, str]], status: int = 200) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        log.append(("predict", body["event_id"]))
        if status != 200:
            return httpx.Response(status, json={"detail": "boom"})
        return httpx.Response(
            200,
            json={"score": 0.25, "decision": "approve", "model_version": "3", "threshold": 0.5},
        )

    return httpx.Client(transport=httpx.MockTransport(handle), base_url="http://serving")


FAST = ReplayOptions(speed=1e9, concurrency=1)


def play(
    events: list[SimulatedEvent], options: ReplayOptions = FAST, status: int = 200
) -> tuple[ReplayStats, list[tuple[str, str]], FakeBus]:
    log: list[tuple[str, str]] = []
    bus = FakeBus(log)
    stats = ReplayStats("test", T0, T0 + timedelta(hours=2))
    player = Player(events, stats, options, publisher=bus, client=server(log, status))
    player.run(threading.Event())
    return stats, log, bus


def test_each_transaction_is_scored_before_it_is_published() -> None:
    events = [event(i, minutes=i) for i in range(20)]
    stats, log, bus = play(events)
    assert stats.transactions == stats.predicted == 20 and stats.predict_errors == 0
    order = [(kind, ident) for kind, ident in log if kind != "label"]
    for e in events:
        ident = str(e.transaction.event_id)
        assert order.index(("predict", ident)) < order.index(("txn", ident))
    assert stats.versions_seen == {"3": 20} and stats.last_score == 0.25
    # The end waits for every acknowledgement as long as a broker's restart may take.
    assert bus.flushed == FAST.flush_timeout_s == 300.0


def test_the_lead_in_is_published_with_its_labels_unscored_and_unpaced() -> None:
    # Ten events in the hour before the start close the gap; ten after it are the replay.
    events = [event(i, minutes=i * 6 - 60, label_after=5) for i in range(10)]
    events += [event(100 + i, minutes=i, label_after=None) for i in range(10)]
    log: list[tuple[str, str]] = []
    stats = ReplayStats("test", T0, T0 + timedelta(hours=1))
    slow = ReplayOptions(speed=60.0, concurrency=1)  # a simulated minute per wall second
    player = Player(
        events, stats, slow, publisher=FakeBus(log), client=server(log), lead_in_until=T0
    )
    began = time.monotonic()
    player.run(threading.Event())
    # The lead-in took no pacing: the replay's 9 simulated minutes took about 9 s, not 69.
    assert time.monotonic() - began < 30
    assert stats.lead_in == 10 and stats.transactions == stats.predicted == 10
    predicted = {ident for kind, ident in log if kind == "predict"}
    lead = {str(e.transaction.event_id) for e in events[:10]}
    assert not predicted & lead
    assert {ident for kind, ident in log if kind == "txn"} >= lead
    assert sum(kind == "label" for kind, _ in log) == 10  # the lead-in's labels came due
    assert [p.name for p in stats.phases] == ["a"]


def test_a_dropped_connection_is_retried_once_and_an_http_error_never() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body["event_id"])
        if body["card_id"] == "c0" and calls.count(body["event_id"]) == 1:
            raise httpx.ReadError("[Errno 9] Bad file descriptor")
        if body["card_id"] == "c1":
            raise httpx.ReadError("always")
        if body["card_id"] == "c2":
            return httpx.Response(503, json={"detail": "busy"})
        return httpx.Response(
            200, json={"score": 0.1, "decision": "approve", "model_version": "3", "threshold": 0.5}
        )

    client = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://serving")
    log: list[tuple[str, str]] = []
    stats = ReplayStats("test", T0, T0 + timedelta(hours=1))
    events = [event(i, minutes=i) for i in range(4)]
    Player(events, stats, FAST, publisher=FakeBus(log), client=client).run(threading.Event())
    ids = [str(e.transaction.event_id) for e in events]
    assert calls.count(ids[0]) == 2 and calls.count(ids[1]) == 2  # one retry each
    assert calls.count(ids[2]) == 1 and calls.count(ids[3]) == 1  # a 503 is not retried
    assert stats.predict_retries == 2
    assert stats.predicted == 2 and stats.predict_errors == 2
    assert sum(kind == "txn" for kind, _ in log) == 4  # every payment published all the same


def test_labels_wait_for_the_simulated_clock_and_missing_ones_are_never_sent() -> None:
    events = [
        event(0, minutes=0, label_after=10),
        event(1, minutes=5, label_after=None),  # never labelled
        event(2, minutes=20),  # the first label (due at minute 10) goes out before this one
        event(3, minutes=25, label_after=600),  # due after the replay ends
    ]
    stats, log, _ = play(events)
    labels = [ident for kind, ident in log if kind == "label"]
    assert labels == [str(events[0].transaction.event_id)]
    first_label = log.index(("label", labels[0]))
    assert first_label < log.index(("predict", str(events[2].transaction.event_id)))
    # One request in flight at a time: event 0 was done before event 1 was sent.
    assert first_label > log.index(("txn", str(events[0].transaction.event_id)))
    assert (stats.labels_sent, stats.labels_never, stats.labels_pending) == (1, 1, 2)


def test_flush_labels_sends_what_is_not_yet_due() -> None:
    events = [event(0, minutes=0, label_after=600), event(1, minutes=1, label_after=900)]
    stats, log, _ = play(events, ReplayOptions(speed=1e9, flush_labels=True))
    assert stats.labels_sent == 2 and stats.labels_pending == 0


def test_a_failing_model_server_is_counted_and_the_payment_still_published() -> None:
    events = [event(i, minutes=i) for i in range(5)]
    stats, log, _ = play(events, status=503)
    assert stats.predict_errors == 5 and stats.predicted == 0
    assert sum(1 for kind, _ in log if kind == "txn") == 5


def test_phases_are_marked_in_simulated_and_wall_time() -> None:
    events = [event(0, minutes=0), event(1, minutes=1, phase="b"), event(2, minutes=2, phase="b")]
    stats, _, _ = play(events)
    assert [(p.name, p.simulated) for p in stats.phases] == [
        ("a", T0),
        ("b", T0 + timedelta(minutes=1)),
    ]
    assert stats.phases[0].wall <= stats.phases[1].wall


def test_stop_ends_the_replay_early_and_says_so() -> None:
    stop = threading.Event()
    log: list[tuple[str, str]] = []
    stats = ReplayStats("test", T0, T0 + timedelta(hours=1))

    def events() -> Any:
        for i in range(100):
            if i == 3:
                stop.set()
            yield event(i, minutes=i / 10)

    Player(events(), stats, FAST, publisher=FakeBus(log), client=server(log)).run(stop)
    assert stats.interrupted and stats.transactions == 3


def test_pacing_follows_the_speed_and_never_exceeds_the_rate() -> None:
    log: list[tuple[str, str]] = []
    stats = ReplayStats("test", T0, T0)
    paced = Player(
        [],
        stats,
        ReplayOptions(speed=60, rate=2, predict=False),
        publisher=FakeBus(log),
        client=None,
    )
    # 120 simulated seconds at 60x: due 2 s after the start; the rate allows one per 0.5 s.
    assert paced._due(120.0, wall_zero=100.0, previous_due=100.0) == pytest.approx(102.0)
    assert paced._due(121.0, wall_zero=100.0, previous_due=102.0) == pytest.approx(102.5)
    only_rate = Player(
        [],
        stats,
        ReplayOptions(speed=None, rate=4, predict=False),
        publisher=FakeBus(log),
        client=None,
    )
    assert only_rate._due(9999.0, wall_zero=0.0, previous_due=1.0) == pytest.approx(1.25)


def test_options_refuse_nonsense() -> None:
    for bad in (dict(speed=0.0), dict(rate=-1.0), dict(speed=None, rate=None), dict(concurrency=0)):
        with pytest.raises(ValueError):
            ReplayOptions(**bad)  # type: ignore[arg-type]


def test_the_request_body_is_the_flat_transaction() -> None:
    txn = event(0, minutes=0).transaction
    body = request_body(txn)
    assert body["card_id"] == "c0" and body["amount"] == 10.0
    assert body["event_time"] == "2025-03-02T18:00:00Z"
    assert Transaction.model_validate(body) == txn


def test_a_replay_starts_after_the_stores_history_at_the_scenarios_time_of_day() -> None:
    assert aligned_start(T0, None) == T0
    assert aligned_start(T0, T0 - timedelta(days=3)) == T0
    assert aligned_start(T0, T0) == T0 + timedelta(days=1)
    assert aligned_start(T0, T0 + timedelta(days=4, hours=2)) == T0 + timedelta(days=5)


def test_a_backfill_ends_where_a_replay_of_the_same_layout_begins() -> None:
    now = T0 + timedelta(days=600, hours=5)
    end = aligned_end(T0, now)
    assert end == T0 + timedelta(days=600)
    assert end <= now < end + timedelta(days=1)
    assert aligned_end(T0, T0 - timedelta(hours=1)) == T0 - timedelta(days=1)
    assert aligned_end(T0, T0) == T0
    # The newest backfilled event is just before the end: the replay starts at the end itself.
    assert aligned_start(T0, end - timedelta(seconds=1)) == end


def test_the_oracle_is_scored_window_by_window() -> None:
    events = [event(i, minutes=10 * i, fraud=i % 4 == 0) for i in range(24)]  # four hours
    stats, _, _ = play(events, ReplayOptions(speed=1e9, oracle_window=timedelta(hours=2)))
    assert [w.transactions for w in stats.oracle] == [12, 12]
    assert [w.frauds for w in stats.oracle] == [3, 3]
    assert stats.oracle[0].start == T0 and stats.oracle[1].start == T0 + timedelta(hours=2)
    # Every event has the same probability: the oracle ranks no better than the fraud rate.
    assert stats.oracle[0].pr_auc == pytest.approx(0.25)


def test_a_replay_against_a_stack_that_is_down_fails_with_one_line(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from bottega.replay.run import ReplayError, check_serving
    from bottega.settings import BottegaSettings

    settings = BottegaSettings(_env_file=None, home=tmp_path, serving={"port": 1})  # type: ignore[call-arg]
    with pytest.raises(ReplayError, match="model server is not ready") as caught:
        check_serving(settings)
    assert caught.value.hint and "make up" in caught.value.hint


def test_a_continued_replay_adds_its_answers_and_counts_to_the_first() -> None:
    first, _, _ = play([event(i, minutes=i) for i in range(5)])
    later, _, _ = play([event(10 + i, minutes=100 + i) for i in range(3)])
    both = first.followed_by(later)
    assert both.transactions == 8 and both.predicted == 8
    assert len(both.served) == 8 and both.versions_seen == {"3": 8}
    assert both.sim_start == first.sim_start and both.sim_now == later.sim_now
    assert both.first_answer["3"] == first.first_answer["3"]
    assert first.transactions == 5  # the first record is left as it was
