"""The oracle report, on hand-made events whose figures are known."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from sklearn.metrics import average_precision_score

from bottega.events import Transaction
from bottega.usecases.fraud.oracle import oracle_report
from bottega.usecases.fraud.simulator import SimulatedEvent

T0 = datetime(2025, 3, 3, tzinfo=UTC)


def event(
    minute: float, p: float, fraud: bool, phase: str = "calm", pattern: str = "normal"
) -> SimulatedEvent:
    when = T0 + timedelta(minutes=minute)
    txn = Transaction(
        event_id=UUID(int=int(minute * 1000) + 1, version=4),
        event_time=when,
        card_id="card-00001",
        merchant_id="m-0001",
        amount=10.0,
        merchant_category="grocery",
        country="FR",
        card_country="FR",
    )
    return SimulatedEvent(
        transaction=txn,
        fraud_probability=p,
        is_fraud=fraud,
        label_time=None if minute % 7 == 0 else when + timedelta(hours=1),
        pattern=pattern,
        phase=phase,
    )


# First hour: two frauds among five. Second hour: none. Third hour: one, in a new phase.
EVENTS = [
    event(1, 0.9, True),
    event(10, 0.2, False),
    event(20, 0.6, False),
    event(30, 0.1, True, pattern="card_testing"),
    event(50, 0.05, False),
    event(70, 0.3, False),
    event(100, 0.01, False),
    event(130, 0.7, True, phase="storm", pattern="fraud_ring"),
    event(150, 0.2, False, phase="storm"),
]


def test_windows_phases_and_overall() -> None:
    report = oracle_report(EVENTS, window=timedelta(hours=1))
    first, second, third = report.windows
    assert (first.start, first.end) == (T0, T0 + timedelta(hours=1))
    assert (first.n, first.frauds, first.fraud_rate) == (5, 2, 0.4)
    assert first.expected_fraud_rate == pytest.approx((0.9 + 0.2 + 0.6 + 0.1 + 0.05) / 5)
    assert first.oracle_pr_auc == pytest.approx(
        average_precision_score([1, 0, 0, 1, 0], [0.9, 0.2, 0.6, 0.1, 0.05])
    )
    # No fraud to rank: no PR-AUC, rather than a misleading 0.
    assert second.frauds == 0 and second.oracle_pr_auc is None
    assert third.phase == "storm" and third.oracle_pr_auc == 1.0

    calm, storm = report.phases
    assert (calm.phase, calm.n, calm.frauds) == ("calm", 7, 2)
    assert (storm.phase, storm.n, storm.start) == ("storm", 2, T0 + timedelta(minutes=130))
    assert report.overall is not None and report.overall.n == len(EVENTS)
    assert report.overall.phase == "calm+storm"
    patterns = {row.pattern: row for row in report.patterns}
    assert patterns["fraud_ring"].frauds == 1 and patterns["normal"].n == 7


def test_a_window_that_spans_a_boundary_names_both_phases() -> None:
    report = oracle_report(EVENTS, window=timedelta(hours=3))
    assert [row.phase for row in report.windows] == ["calm+storm"]


def test_label_figures() -> None:
    report = oracle_report(EVENTS, window=timedelta(hours=1))
    assert report.labels_never == sum(e.label_time is None for e in EVENTS)
    assert report.label_delay_median_s == 3600.0


def test_the_report_is_json_ready() -> None:
    data = json.loads(json.dumps(oracle_report(EVENTS, window=timedelta(hours=1)).to_dict()))
    assert data["window_s"] == 3600.0
    assert data["windows"][1]["oracle_pr_auc"] is None
    assert data["overall"]["n"] == len(EVENTS)
    assert set(data["windows"][0]) >= {"start", "end", "phase", "n", "frauds", "fraud_rate"}
    assert datetime.fromisoformat(data["windows"][0]["start"]) == T0


def test_no_events_no_figures() -> None:
    report = oracle_report([], window=timedelta(hours=1))
    assert report.windows == [] and report.overall is None
    assert report.to_dict()["overall"] is None and report.to_dict()["phases"] == []


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        oracle_report(EVENTS, window=timedelta(0))
