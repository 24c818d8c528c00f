"""The promotion policy and job, on an in-memory registry and fake scorers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bottega.events import ModelEvent
from bottega.registry import (
    CHALLENGER,
    CHAMPION,
    TAG_DECISION,
    TAG_HOLDOUT_CARDS,
    TAG_HOLDOUT_END,
    TAG_HOLDOUT_START,
    TAG_LABELS_AS_OF,
    TAG_PREVIOUS_CHAMPION,
    TAG_REASON,
    ModelVersion,
    RegistryError,
    rollback,
)
from bottega.usecases.fraud.metrics import evaluate
from pipelines.promote import job
from pipelines.promote.policy import Interval, Intervals, PromotionPolicy, decide, paired_bootstrap

NAME = "fraud-detector"
POLICY = PromotionPolicy(pr_auc_margin=0.01, log_loss_tolerance=0.05, min_lift=2.0)


def metrics(pr_auc: float, log_loss: float) -> dict[str, float]:
    return {"pr_auc": pr_auc, "log_loss": log_loss}


def test_first_valid_model_becomes_champion() -> None:
    d = decide(metrics(0.3, 0.02), None, 0.005, POLICY)
    assert d.promote and "first valid" in d.reason


def test_a_model_no_better_than_chance_is_never_champion() -> None:
    d = decide(metrics(0.006, 0.03), None, 0.005, POLICY)
    assert not d.promote and "not a valid model" in d.reason


def test_promoted_only_beyond_the_margin() -> None:
    assert decide(metrics(0.309, 0.02), metrics(0.30, 0.02), 0.005, POLICY).promote is False
    assert decide(metrics(0.311, 0.02), metrics(0.30, 0.02), 0.005, POLICY).promote is True


def test_log_loss_regression_beyond_tolerance_is_refused() -> None:
    d = decide(metrics(0.40, 0.0212), metrics(0.30, 0.02), 0.005, POLICY)
    assert not d.promote and "log loss regresses" in d.reason
    assert d.numbers["log_loss_change"] == pytest.approx(0.06)
    assert decide(metrics(0.40, 0.0208), metrics(0.30, 0.02), 0.005, POLICY).promote


class FakeRegistry:
    """An in-memory registry with MLflow's alias semantics: one version per alias."""

    def __init__(self, versions: list[ModelVersion]) -> None:
        self._versions = {v.version: v for v in versions}
        self.aliases: dict[str, str] = {}

    def versions(self, name: str) -> list[ModelVersion]:
        return sorted(self._versions.values(), key=lambda v: int(v.version), reverse=True)

    def get(self, name: str, version: str) -> ModelVersion:
        if version not in self._versions:
            raise RegistryError(f"no version {version}")
        v = self._versions[version]
        aliases = tuple(a for a, target in self.aliases.items() if target == version)
        return replace(v, aliases=aliases)

    def by_alias(self, name: str, alias: str) -> ModelVersion | None:
        target = self.aliases.get(alias)
        return self.get(name, target) if target else None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        v = self._versions[version]
        self._versions[version] = replace(v, tags={**v.tags, **tags})

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.pop(alias, None)


HOLDOUT_TAGS = {
    TAG_HOLDOUT_START: "2025-03-10T00:00:00+00:00",
    TAG_HOLDOUT_END: "2025-03-11T00:00:00+00:00",
    TAG_LABELS_AS_OF: "2025-03-11T00:00:00+00:00",
}
RNG = np.random.default_rng(1)
ORACLE = np.where(RNG.random(4000) < 0.05, RNG.uniform(0.3, 0.9, 4000), RNG.uniform(0, 0.01, 4000))
HOLDOUT = pd.DataFrame(
    {
        "event_time": pd.date_range("2025-03-10", periods=4000, freq="20s", tz="UTC"),
        "is_fraud": RNG.random(4000) < ORACLE,
        "oracle": ORACLE,
    }
)
# Version "1" scores with the oracle, "2" with noise, "3" with a slightly noisy oracle.
SCORES = {
    "1": ORACLE,
    "2": np.clip(ORACLE + RNG.normal(0, 0.3, 4000), 0, 1),
    "3": np.clip(ORACLE + RNG.normal(0, 0.002, 4000), 0, 1),
}


@pytest.fixture()
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    monkeypatch.setattr(job, "load_window", lambda fs, start, end, as_of: HOLDOUT)
    return FakeRegistry(
        [ModelVersion(NAME, v, f"run{v}", tags=dict(HOLDOUT_TAGS)) for v in ("1", "2", "3")]
    )


def run_promote(
    registry: FakeRegistry, version: str, **overrides: Any
) -> tuple[job.PromotionReport, list[ModelEvent]]:
    """``job.promote`` on the fake registry; by default each version scores with ``SCORES`` on
    the holdout rebuilt by the replaced ``load_window`` (no run logged one)."""
    events: list[ModelEvent] = []

    def publish(event: ModelEvent) -> bool:
        events.append(event)
        return True

    options: dict[str, Any] = {
        "policy": POLICY,
        "scorer": lambda v, frame: SCORES[v.version],
        "logged": lambda v: None,
        **overrides,
    }
    report = job.promote(
        registry,
        fs=None,  # type: ignore[arg-type]  (load_window is replaced)
        name=NAME,
        version=version,
        publish=publish,
        **options,
    )
    return report, events


def test_first_then_refused_then_rollback(registry: FakeRegistry) -> None:
    first, events = run_promote(registry, "1")
    assert first.promoted and registry.aliases[CHAMPION] == "1"
    assert events[0].action == "promoted" and events[0].previous_version is None

    refused, events = run_promote(registry, "2")
    assert not refused.promoted and registry.aliases[CHAMPION] == "1"
    assert events[0].action == "rejected" and events[0].reason == refused.reason
    tags = registry.get(NAME, "2").tags
    assert tags[TAG_DECISION] == "rejected" and "does not beat" in tags[TAG_REASON]
    assert float(tags["bottega.decision.champion_pr_auc"]) > float(
        tags["bottega.decision.challenger_pr_auc"]
    )


def test_a_promotion_records_the_previous_champion_for_rollback(registry: FakeRegistry) -> None:
    registry.set_alias(NAME, CHAMPION, "2")
    report, _ = run_promote(registry, "3")
    assert report.promoted and report.champion_before == "2"
    assert registry.get(NAME, "3").tags[TAG_PREVIOUS_CHAMPION] == "2"
    demoted, restored = rollback(registry, NAME)
    assert (demoted.version, restored.version) == ("3", "2")
    assert registry.aliases[CHAMPION] == "2"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(registry, NAME)


def test_challenger_alias_is_the_default_and_the_champion_cannot_challenge_itself(
    registry: FakeRegistry,
) -> None:
    registry.set_alias(NAME, CHALLENGER, "1")
    report, _ = run_promote(registry, None)  # type: ignore[arg-type]
    assert report.version == "1" and report.promoted
    # Promoted, it is no longer a challenger: the model server stops shadowing it.
    assert CHALLENGER not in registry.aliases
    with pytest.raises(RegistryError, match="already the champion"):
        run_promote(registry, "1")


def test_a_version_without_holdout_tags_is_refused(registry: FakeRegistry) -> None:
    registry._versions["4"] = ModelVersion(NAME, "4", "run4")
    with pytest.raises(RegistryError, match="not registered by the training pipeline"):
        run_promote(registry, "4")
    assert CHAMPION not in registry.aliases


def test_the_holdout_logged_with_the_run_is_used_and_the_store_is_not_read(
    registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_store(*args: object) -> pd.DataFrame:
        raise AssertionError("the store was read although the run logged its holdout")

    monkeypatch.setattr(job, "load_window", no_store)
    # Logged: the first half of the rows only. Version "2" (noise) is scored on exactly those.
    half = HOLDOUT.iloc[:2000]
    scored: list[int] = []

    def scorer(v: ModelVersion, frame: pd.DataFrame) -> np.ndarray:
        scored.append(len(frame))
        return SCORES[v.version][: len(frame)]

    report = job.promote(
        registry,
        fs=None,  # type: ignore[arg-type]
        name=NAME,
        version="2",
        policy=POLICY,
        scorer=scorer,
        logged=lambda v: half if v.version == "2" else None,
    )
    assert scored == [2000]  # no champion yet: the challenger alone, on the logged rows
    on_logged = evaluate(half["is_fraud"].astype(np.int64).to_numpy(), SCORES["2"][:2000])
    assert report.numbers["challenger_pr_auc"] == pytest.approx(on_logged["pr_auc"])


def test_timestamps_in_tags_parse() -> None:
    assert datetime.fromisoformat(HOLDOUT_TAGS[TAG_HOLDOUT_START]).tzinfo == UTC


def test_the_comparison_leaves_out_the_rows_the_champion_was_fitted_on(
    registry: FakeRegistry,
) -> None:
    # The challenger's holdout spans the day before the champion's window ended and the day
    # after. On the day before, the champion scores as well as the oracle (it was fitted on
    # those rows); after, it is noise. The challenger is close to the oracle on both days.
    times = pd.date_range("2025-03-10", periods=8000, freq="20s", tz="UTC")
    oracle = np.concatenate([ORACLE, ORACLE])
    frame = pd.DataFrame(
        {
            "event_time": times,
            "is_fraud": np.concatenate([HOLDOUT["is_fraud"], HOLDOUT["is_fraud"]]),
            "s1": np.concatenate([ORACLE, SCORES["2"]]),
            "s3": np.clip(oracle + RNG.normal(0, 0.05, 8000), 0, 1),
        }
    )
    end = times[4000]  # the champion's window ended where the second day starts
    registry.set_tags(NAME, "1", {TAG_HOLDOUT_END: end.isoformat()})
    registry.set_alias(NAME, CHAMPION, "1")

    def decide_on(policy: PromotionPolicy) -> job.PromotionReport:
        report, _ = run_promote(
            registry,
            "3",
            policy=policy,
            scorer=lambda v, rows: rows[f"s{v.version}"].to_numpy(),
            logged=lambda v: frame,
        )
        return report

    report = decide_on(POLICY)
    assert report.promoted, report.reason
    assert report.numbers["compared_rows"] == 4000
    assert "after the champion's training window" in report.reason

    # Too few frauds after the champion's window: all rows, which flatter the champion.
    registry.set_alias(NAME, CHAMPION, "1")
    whole = decide_on(POLICY.model_copy(update={"min_unseen_frauds": 10_000}))
    assert whole.numbers["compared_rows"] == 8000
    assert "fitted on some of these rows" in whole.reason
    assert whole.numbers["champion_pr_auc"] > report.numbers["champion_pr_auc"]


def test_a_degraded_champion_is_replaced_unless_the_challenger_is_shown_worse() -> None:
    challenger = {"pr_auc": 0.198, "log_loss": 0.025}
    champion = {"pr_auc": 0.207, "log_loss": 0.024}
    # Healthy champion: a gain of -0.009 is refused.
    assert not decide(challenger, champion, 0.005, POLICY).promote
    # Degraded: the interval holds zero, so the challenger is not shown worse.
    unclear = Intervals(Interval(-0.04, 0.02), Interval(-0.03, 0.06))
    taken = decide(challenger, champion, 0.005, POLICY, degraded=unclear)
    assert taken.promote and "not shown worse" in taken.reason
    assert taken.numbers["pr_auc_gain_low"] == -0.04
    # Shown worse in PR-AUC, or in log loss beyond the tolerance: refused all the same.
    worse = Intervals(Interval(-0.06, -0.01), Interval(-0.03, 0.06))
    assert not decide(challenger, champion, 0.005, POLICY, degraded=worse).promote
    looser = Intervals(Interval(-0.04, 0.02), Interval(0.06, 0.2))
    refused = decide(challenger, champion, 0.005, POLICY, degraded=looser)
    assert not refused.promote and "log loss" in refused.reason
    # Validity still comes first.
    chance = {"pr_auc": 0.006, "log_loss": 0.03}
    assert not decide(chance, champion, 0.005, POLICY, degraded=unclear).promote


def test_the_paired_bootstrap_separates_a_clear_gap_and_straddles_none() -> None:
    y = HOLDOUT["is_fraud"].to_numpy().astype(np.int64)
    clear = paired_bootstrap(y, SCORES["1"], SCORES["2"], resamples=100, confidence=0.95)
    assert clear.pr_auc_gain.low > 0 and clear.log_loss_change.high < 0
    same = paired_bootstrap(y, SCORES["1"], SCORES["1"], resamples=100, confidence=0.95)
    assert same.pr_auc_gain == Interval(0.0, 0.0)
    close = paired_bootstrap(y, SCORES["3"], SCORES["1"], resamples=100, confidence=0.95)
    assert close.pr_auc_gain.low < 0 < close.pr_auc_gain.high


def test_a_degraded_champion_still_keeps_its_place_against_a_worse_challenger(
    registry: FakeRegistry,
) -> None:
    registry.set_alias(NAME, CHAMPION, "1")

    def judge(version: str) -> job.PromotionReport:
        return run_promote(registry, version, champion_degraded=True)[0]

    worse = judge("2")  # noise against the oracle
    assert not worse.promoted and worse.numbers["pr_auc_gain_high"] < 0
    close = judge("3")  # the oracle with a little noise: not shown worse
    assert close.promoted and "not shown worse" in close.reason


def test_a_champion_that_held_out_the_same_cards_is_compared_on_every_row() -> None:
    frame = HOLDOUT.assign(event_time=pd.date_range("2025-03-10", periods=4000, freq="20s"))
    cards = {TAG_HOLDOUT_CARDS: "0.85:1.0"}
    end = {TAG_HOLDOUT_END: "2025-03-10T12:00:00"}  # no zone: read as UTC
    split_by_card = ModelVersion(NAME, "1", "run1", tags={**cards, **end})
    split_by_time = ModelVersion(NAME, "1", "run1", tags=dict(end))
    challenger = ModelVersion(NAME, "2", "run2", tags=dict(cards))
    rows, why = job.unseen_by(split_by_card, challenger, frame, min_frauds=1)
    assert len(rows) == 4000 and "same cards" in why
    rows, why = job.unseen_by(split_by_time, challenger, frame, min_frauds=1)
    assert 0 < len(rows) < 4000 and "after the champion's training window" in why
    broken = ModelVersion(NAME, "1", "run1", tags={TAG_HOLDOUT_END: "yesterday"})
    with pytest.raises(RegistryError, match="malformed"):
        job.unseen_by(broken, challenger, frame, min_frauds=1)
