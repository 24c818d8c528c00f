"""The promotion job: score the challenger and the champion on the challenger's holdout, decide
with the policy, record the decision, move the alias, publish the event.

The holdout is the one training logged with the challenger's run (``holdout/holdout.parquet``),
the rows the challenger never saw. A version registered without it is judged on the holdout
rebuilt from the feature store, with the window and the label cut-off that training recorded in
the version's tags. Of those rows, both models are compared on the ones the champion never saw
either, newer than its training window, when they hold frauds enough (:func:`unseen_by`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from bottega.events import ModelEvent
from bottega.registry import (
    CHALLENGER,
    CHAMPION,
    DECISION_METRICS_PREFIX,
    HOLDOUT_ARTIFACT,
    HOLDOUT_DIR,
    TAG_DECISION,
    TAG_HOLDOUT_CARDS,
    TAG_HOLDOUT_END,
    TAG_HOLDOUT_START,
    TAG_LABELS_AS_OF,
    TAG_PREVIOUS_CHAMPION,
    TAG_REASON,
    ModelVersion,
    Registry,
    RegistryError,
)
from bottega.usecases.fraud.features.request import MODEL_FEATURES
from bottega.usecases.fraud.metrics import evaluate
from bottega.usecases.fraud.store import FraudFeatureStore
from pipelines.promote.policy import Decision, PromotionPolicy, decide, paired_bootstrap
from pipelines.train.data import in_buckets, load_window

log = logging.getLogger(__name__)

Scorer = Callable[[ModelVersion, pd.DataFrame], np.ndarray]
Publisher = Callable[[ModelEvent], bool]
# The holdout logged with a version's run, or None where the run logged none.
HoldoutReader = Callable[[ModelVersion], pd.DataFrame | None]


@dataclass(frozen=True)
class PromotionReport:
    """What the promotion job decided."""

    model_name: str
    version: str
    promoted: bool
    reason: str
    champion_before: str | None
    champion_after: str | None
    published: bool
    numbers: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The report as plain values."""
        return asdict(self)


def mlflow_scorer(version: ModelVersion, frame: pd.DataFrame) -> np.ndarray:
    """Scores of a registered version, loaded through MLflow as serving loads it."""
    model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    return np.asarray(model.predict(frame[list(MODEL_FEATURES)]), dtype=np.float64).ravel()


def logged_holdout(version: ModelVersion) -> pd.DataFrame | None:
    """The holdout rows the version's training run logged, or None if it logged none."""
    from mlflow.artifacts import download_artifacts, list_artifacts

    listed = list_artifacts(run_id=version.run_id, artifact_path=HOLDOUT_DIR)
    if not any(entry.path == HOLDOUT_ARTIFACT for entry in listed):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = download_artifacts(
            run_id=version.run_id, artifact_path=HOLDOUT_ARTIFACT, dst_path=tmp
        )
        return pd.read_parquet(Path(path))


def holdout_of(fs: FraudFeatureStore, version: ModelVersion) -> pd.DataFrame:
    """The challenger's holdout rows, rebuilt from what training recorded on the version."""
    try:
        start = datetime.fromisoformat(version.tags[TAG_HOLDOUT_START])
        end = datetime.fromisoformat(version.tags[TAG_HOLDOUT_END])
        as_of = datetime.fromisoformat(version.tags[TAG_LABELS_AS_OF])
    except KeyError as exc:
        raise RegistryError(
            f"{version.name} v{version.version} has no {exc.args[0]} tag: "
            "it was not registered by the training pipeline"
        ) from None
    rows = load_window(fs, start, end, as_of)
    cards = _cards(version)
    if cards is not None:
        rows = in_buckets(rows, *cards)
    return rows


def _cards(version: ModelVersion) -> tuple[float, float] | None:
    """The bucket range of a version's held-out cards, if it was split by card."""
    cards = version.tags.get(TAG_HOLDOUT_CARDS)
    if not cards:
        return None
    try:
        low, high = (float(x) for x in cards.split(":"))
    except ValueError:
        raise RegistryError(
            f"{version.name} v{version.version}: malformed {TAG_HOLDOUT_CARDS} tag {cards!r}"
        ) from None
    return low, high


def unseen_by(
    champion: ModelVersion | None,
    challenger: ModelVersion,
    holdout: pd.DataFrame,
    min_frauds: int,
) -> tuple[pd.DataFrame, str]:
    """The holdout rows to compare on, and which they are.

    The challenger never saw its holdout, but its window may reach back into the champion's,
    and a champion split by time was fitted on those older rows, which flatters it. So both are
    compared on the rows newer than the end of the champion's training window (its
    ``holdout_end`` tag), where those hold ``min_frauds`` frauds and some legitimate rows; else
    on the whole holdout, which errs towards keeping the champion. A champion that held out the
    same cards (split by card, as every retraining is) never saw any of these rows: all count.
    """
    if champion is None:
        return holdout, f"on all {len(holdout)} holdout rows"
    theirs, ours = _cards(champion), _cards(challenger)
    if theirs is not None and ours is not None and theirs[0] <= ours[0] and ours[1] <= theirs[1]:
        return holdout, (
            f"on all {len(holdout)} holdout rows: the champion held out the same cards"
        )
    end = champion.tags.get(TAG_HOLDOUT_END)
    if end is None:
        return holdout, f"on all {len(holdout)} holdout rows"
    try:
        cutoff = pd.to_datetime(end, utc=True)
    except (ValueError, TypeError):
        raise RegistryError(
            f"{champion.name} v{champion.version}: malformed {TAG_HOLDOUT_END} tag {end!r}"
        ) from None
    times = pd.to_datetime(holdout["event_time"], utc=True)
    newer = holdout[(times >= cutoff).to_numpy()]
    frauds = int(newer["is_fraud"].sum())
    if frauds >= min_frauds and frauds < len(newer):
        return newer.reset_index(drop=True), (
            f"on the {len(newer)} holdout rows after the champion's training window, "
            f"{frauds} frauds"
        )
    return holdout, (
        f"on all {len(holdout)} holdout rows: only {frauds} frauds after the champion's "
        f"training window, under {min_frauds}; the champion was fitted on some of these rows"
    )


def promote(
    registry: Registry,
    fs: FraudFeatureStore,
    name: str,
    *,
    version: str | None = None,
    policy: PromotionPolicy | None = None,
    scorer: Scorer = mlflow_scorer,
    publish: Publisher | None = None,
    logged: HoldoutReader = logged_holdout,
    champion_degraded: bool = False,
) -> PromotionReport:
    """Decide on ``version`` (default: the ``challenger`` alias, else the newest version).

    ``champion_degraded``: a quality alert on live traffic asked for this challenger; the policy
    then promotes it unless the holdout shows it worse (``decide``'s degraded rule).
    """
    policy = policy or PromotionPolicy()
    challenger = _challenger(registry, name, version)
    champion = registry.by_alias(name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        raise RegistryError(f"{name} v{challenger.version} is already the champion")

    holdout = logged(challenger)
    if holdout is None:
        log.info("no logged holdout: rebuilding it", extra={"version": challenger.version})
        holdout = holdout_of(fs, challenger)
    compared, why = unseen_by(champion, challenger, holdout, policy.min_unseen_frauds)
    y = compared["is_fraud"].astype(np.int64).to_numpy()
    challenger_scores = scorer(challenger, compared)
    theirs = evaluate(y, challenger_scores)
    ours, intervals = None, None
    if champion is not None:
        champion_scores = scorer(champion, compared)
        ours = evaluate(y, champion_scores)
        if champion_degraded:
            intervals = paired_bootstrap(
                y,
                np.asarray(challenger_scores, np.float64),
                np.asarray(champion_scores, np.float64),
                resamples=policy.resamples,
                confidence=policy.confidence,
            )
    decided = decide(theirs, ours, float(y.mean()), policy, degraded=intervals)
    decision = replace(
        decided,
        reason=f"{decided.reason} ({why})",
        numbers={
            **decided.numbers,
            "compared_rows": float(len(y)),
            "compared_frauds": float(y.sum()),
        },
    )
    log.info(
        "promotion decision",
        extra={"version": challenger.version, "promote": decision.promote, "why": decision.reason},
    )
    _record(registry, name, challenger, champion, decision)

    event = ModelEvent(
        model_name=name,
        version=challenger.version,
        action="promoted" if decision.promote else "rejected",
        alias=CHAMPION if decision.promote else None,
        previous_version=champion.version if champion is not None else None,
        metrics=decision.numbers,
        reason=decision.reason,
    )
    published = publish(event) if publish is not None else False
    after = challenger.version if decision.promote else (champion.version if champion else None)
    return PromotionReport(
        model_name=name,
        version=challenger.version,
        promoted=decision.promote,
        reason=decision.reason,
        champion_before=champion.version if champion else None,
        champion_after=after,
        published=published,
        numbers=decision.numbers,
    )


def _challenger(registry: Registry, name: str, version: str | None) -> ModelVersion:
    if version is not None:
        return registry.get(name, version)
    aliased = registry.by_alias(name, CHALLENGER)
    if aliased is not None:
        return aliased
    versions = registry.versions(name)
    if not versions:
        raise RegistryError(f"{name} has no registered version", hint="bottega train")
    return versions[0]


def _record(
    registry: Registry,
    name: str,
    challenger: ModelVersion,
    champion: ModelVersion | None,
    decision: Decision,
) -> None:
    """Tags first, then the alias: a crash in between leaves the champion where it was."""
    tags = {
        TAG_DECISION: "promoted" if decision.promote else "rejected",
        TAG_REASON: decision.reason,
        **{f"{DECISION_METRICS_PREFIX}{k}": f"{v:.6g}" for k, v in decision.numbers.items()},
    }
    if decision.promote and champion is not None:
        tags[TAG_PREVIOUS_CHAMPION] = champion.version
    registry.set_tags(name, challenger.version, tags)
    if decision.promote:
        registry.set_alias(name, CHAMPION, challenger.version)
        # The new champion is no longer a challenger: the model server stops shadowing it.
        if challenger.aliases and CHALLENGER in challenger.aliases:
            registry.delete_alias(name, CHALLENGER)
