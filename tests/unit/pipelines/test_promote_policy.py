"""The promotion policy and job, on an in-memory registry and fake scorers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from bottega.events import ModelEvent
from bottega.registry import (
    CHALLENGER,
    CHAMPION,
    TAG_DECISION,
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
from pipelines.promote.policy import PromotionPolicy, decide

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
HOLDOUT = pd.DataFrame({"is_fraud": RNG.random(4000) < ORACLE, "oracle": ORACLE})
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
    registry: FakeRegistry, version: str
) -> tuple[job.PromotionReport, list[ModelEvent]]:
    events: list[ModelEvent] = []

    def publish(event: ModelEvent) -> bool:
        events.append(event)
        return True

    report = job.promote(
        registry,
        fs=None,  # type: ignore[arg-type]  (load_window is replaced)
        name=NAME,
        version=version,
        policy=POLICY,
        scorer=lambda v, frame: SCORES[v.version],
        publish=publish,
        logged=lambda v: None,  # no run logged a holdout: it is rebuilt (load_window)
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
