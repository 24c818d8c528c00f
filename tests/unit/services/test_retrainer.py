"""The retrainer's deduplication, cooldown and retries, with fake jobs and a fake clock."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.trainer.history import RunHistory, RunRecord
from services.trainer.jobs import JobFailed
from services.trainer.metrics import TrainerMetrics
from services.trainer.retrainer import QUALITY_ALERT, Outcome, Retrainer, RetrainPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeJobs:
    """Scripted outcomes: each train() pops the next; a "fail" entry raises."""

    def __init__(self, outcomes: list[str], promoted: bool = True) -> None:
        self.outcomes = outcomes
        self.promoted = promoted
        self.trained = 0
        self.promoted_versions: list[str] = []
        self.degraded: list[bool] = []
        self.gate: threading.Event | None = None

    def train(self) -> dict[str, Any]:
        if self.gate is not None:
            self.gate.wait(5)
        self.trained += 1
        if self.outcomes.pop(0) == "fail":
            raise JobFailed("the window holds no labelled transactions")
        return {"version": str(self.trained), "run_id": f"run{self.trained}"}

    def promote(self, version: str, *, champion_degraded: bool = False) -> dict[str, Any]:
        self.promoted_versions.append(version)
        self.degraded.append(champion_degraded)
        return {"promoted": self.promoted, "reason": "better", "version": version}

    def start(self) -> FakeJobs:
        return self

    def cancel(self) -> None:
        pass


def make(
    tmp_path: Path, jobs: FakeJobs, clock: Clock, **policy: Any
) -> tuple[Retrainer, RunHistory, CollectorRegistry]:
    registry = CollectorRegistry()
    history = RunHistory(tmp_path / "runs.jsonl")
    retrainer = Retrainer(
        jobs,
        history,
        RetrainPolicy(**{"cooldown_s": 60, "backoff_initial_s": 10, **policy}),
        TrainerMetrics(registry),
        clock=clock,
    )
    return retrainer, history, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_a_run_trains_then_promotes_and_is_recorded(tmp_path: Path) -> None:
    jobs, clock = FakeJobs(["ok"]), Clock()
    retrainer, history, registry = make(tmp_path, jobs, clock)
    submitted = retrainer.submit("alert", ["FeatureDriftDetected"])
    assert submitted.outcome is Outcome.ACCEPTED
    done = retrainer.step()
    assert done is not None and done.status == "succeeded" and done.decision == "promoted"
    assert jobs.promoted_versions == ["1"]
    assert jobs.degraded == [False]  # drift alone: the champion is not shown failing
    assert history.all()[0].alerts == ["FeatureDriftDetected"]
    assert value(registry, "bottega_trainer_runs_total", outcome="promoted") == 1
    assert value(registry, "bottega_trainer_promotions_total") == 1
    assert value(registry, "bottega_trainer_running") == 0


def test_alerts_during_a_run_are_folded_into_it(tmp_path: Path) -> None:
    jobs, clock = FakeJobs(["ok"]), Clock()
    retrainer, history, _ = make(tmp_path, jobs, clock)
    first = retrainer.submit("alert", ["FeatureDriftDetected"])
    second = retrainer.submit("alert", ["PredictionDriftDetected"])
    assert second.outcome is Outcome.DEDUPLICATED
    assert second.run is not None and first.run is not None and second.run.id == first.run.id
    retrainer.step()
    assert jobs.trained == 1
    runs = history.all()
    assert len(runs) == 1 and runs[0].deduplicated == 1


def test_the_cooldown_refuses_requests_until_it_passes(tmp_path: Path) -> None:
    jobs, clock = FakeJobs(["ok", "ok"]), Clock()
    retrainer, _, _ = make(tmp_path, jobs, clock, cooldown_s=60)
    retrainer.submit("alert", ["A"])
    retrainer.step()
    clock.now += 59
    refused = retrainer.submit("alert", ["A"])
    assert refused.outcome is Outcome.COOLING_DOWN
    assert refused.retry_after_s == pytest.approx(1.0)
    clock.now += 2
    assert retrainer.submit("alert", ["A"]).outcome is Outcome.ACCEPTED


def test_a_failed_attempt_is_retried_after_a_doubling_backoff(tmp_path: Path) -> None:
    jobs, clock = FakeJobs(["fail", "fail", "ok"]), Clock()
    retrainer, _, registry = make(tmp_path, jobs, clock, max_attempts=3, backoff_initial_s=10)
    retrainer.submit("alert", ["A"])
    first = retrainer.step()
    assert first is not None and first.status == "retrying"
    assert retrainer.seconds_until_due() == pytest.approx(10)
    assert retrainer.step() is None  # not due yet
    clock.now += 10
    second = retrainer.step()
    assert second is not None and second.status == "retrying"
    assert retrainer.seconds_until_due() == pytest.approx(20)
    clock.now += 20
    third = retrainer.step()
    assert third is not None and third.status == "succeeded"
    assert [a.error is not None for a in third.attempts] == [True, True, False]
    assert value(registry, "bottega_trainer_failed_attempts_total") == 2


def test_a_run_that_keeps_failing_is_recorded_failed_and_promotes_nothing(
    tmp_path: Path,
) -> None:
    jobs, clock = FakeJobs(["fail", "fail"]), Clock()
    retrainer, history, registry = make(tmp_path, jobs, clock, max_attempts=2)
    retrainer.submit("manual", [], reason="test")
    retrainer.step()
    clock.now += 10
    done = retrainer.step()
    assert done is not None and done.status == "failed"
    assert "no labelled transactions" in (done.error or "")
    assert jobs.promoted_versions == []
    assert value(registry, "bottega_trainer_runs_total", outcome="failed") == 1
    assert retrainer.active is None
    assert history.all()[0].status == "failed"


def test_backoff_is_capped() -> None:
    policy = RetrainPolicy(backoff_initial_s=10, backoff_max_s=25)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [10, 20, 25, 25]


def test_the_history_survives_a_restart_and_in_flight_runs_read_back_interrupted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.jsonl"
    history = RunHistory(path)
    done = RunRecord(trigger="alert", alerts=["A"], status="succeeded", decision="rejected")
    history.save(done)
    history.save(RunRecord(trigger="manual", status="running"))
    with path.open("a") as out:
        out.write('{"id": "cut-sh')  # a line a crash cut short
    reread = RunHistory(path)
    statuses = {r.trigger: r.status for r in reread.all()}
    assert statuses == {"alert": "succeeded", "manual": "interrupted"}
    assert reread.get(done.id) is not None


def test_the_cooldown_survives_a_restart(tmp_path: Path) -> None:
    jobs, clock = FakeJobs(["ok", "ok"]), Clock()
    retrainer, _, _ = make(tmp_path, jobs, clock, cooldown_s=60)
    retrainer.submit("alert", ["A"])
    retrainer.step()
    again, _, _ = make(tmp_path, jobs, clock, cooldown_s=60)
    assert again.submit("alert", ["A"]).outcome is Outcome.COOLING_DOWN


def test_the_worker_thread_runs_an_accepted_request(tmp_path: Path) -> None:
    jobs, clock = FakeJobs(["ok"]), Clock()
    jobs.gate = threading.Event()
    retrainer, history, _ = make(tmp_path, jobs, clock)
    retrainer.start()
    try:
        retrainer.submit("alert", ["A"])
        assert retrainer.submit("alert", ["B"]).outcome is Outcome.DEDUPLICATED
        jobs.gate.set()
        for _ in range(100):
            if history.all()[0].status == "succeeded":
                break
            threading.Event().wait(0.05)
        assert history.all()[0].status == "succeeded"
        assert jobs.trained == 1
    finally:
        retrainer.stop()


def test_only_a_quality_alert_judges_the_champion_degraded(tmp_path: Path) -> None:
    jobs, clock = FakeJobs(["ok", "ok"]), Clock()
    retrainer, _, _ = make(tmp_path, jobs, clock, cooldown_s=0.0)
    assert retrainer.submit("alert", ["FeatureDriftDetected", QUALITY_ALERT]).outcome is (
        Outcome.ACCEPTED
    )
    retrainer.step()
    assert retrainer.submit("manual", []).outcome is Outcome.ACCEPTED
    retrainer.step()
    assert jobs.degraded == [True, False]


def test_the_quality_alert_is_a_rule_that_asks_for_retraining() -> None:
    rules = [
        rule
        for path in (Path(__file__).parents[3] / "monitoring" / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    (quality,) = [r for r in rules if r.get("alert") == QUALITY_ALERT]
    assert quality["labels"]["retrain"] == "true"
