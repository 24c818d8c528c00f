"""The promotion policy: a pure decision on two sets of holdout metrics.

A challenger replaces the champion only when, on the same holdout rows, its PR-AUC beats the
champion's by at least ``pr_auc_margin`` and its log loss is no worse than the champion's
by more than ``log_loss_tolerance`` (relative). With no champion, the first *valid* model
becomes champion: valid means it ranks frauds clearly better than chance (PR-AUC at least
``min_lift`` times the holdout's fraud rate, the PR-AUC of a random score).

When the champion is known to be degraded (a quality alert on labelled live traffic asked for
the retraining), the burden of proof turns round: the challenger, trained on the newer data,
replaces it unless the holdout shows it is worse, that is unless the paired bootstrap interval
(``confidence``) of the PR-AUC gain lies wholly below zero, or that of the log loss change
wholly above ``log_loss_tolerance``. A holdout of a few dozen frauds cannot show a gain of a
few hundredths, while the alert has already shown the champion failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import average_precision_score, log_loss


class PromotionPolicy(BaseModel):
    """The policy's thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pr_auc_margin: float = Field(default=0.005, ge=0, description="Absolute PR-AUC gain needed.")
    log_loss_tolerance: float = Field(
        default=0.02, ge=0, description="Allowed relative increase of log loss."
    )
    min_lift: float = Field(default=2.0, ge=1, description="Validity: PR-AUC / fraud rate.")
    min_unseen_frauds: int = Field(
        default=30,
        ge=1,
        description="Compare only on the holdout rows newer than the champion's training window "
        "when they hold at least this many frauds; else on the whole holdout.",
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Of the bootstrap intervals (degraded champion)."
    )
    resamples: int = Field(default=300, ge=50, description="Paired bootstrap resamples.")


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of a difference, challenger minus champion."""

    low: float
    high: float


@dataclass(frozen=True)
class Intervals:
    """The paired bootstrap intervals the degraded-champion rule reads."""

    pr_auc_gain: Interval
    log_loss_change: Interval


def paired_bootstrap(
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    seed: int = 0,
) -> Intervals:
    """Intervals of the PR-AUC gain and the relative log loss change, over the same resamples.

    Frauds and legitimate rows are resampled separately, so every resample holds the holdout's
    count of each; both models are scored on the same resampled rows (paired).
    """
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    gains, changes = np.empty(resamples), np.empty(resamples)
    for i in range(resamples):
        rows = np.concatenate(
            [
                rng.choice(positives, positives.size, replace=True),
                rng.choice(negatives, negatives.size, replace=True),
            ]
        )
        yy, a, b = y[rows], challenger[rows], champion[rows]
        gains[i] = average_precision_score(yy, a) - average_precision_score(yy, b)
        theirs = log_loss(yy, b, labels=[0, 1])
        changes[i] = (log_loss(yy, a, labels=[0, 1]) - theirs) / max(theirs, 1e-12)
    tail = (1 - confidence) / 2 * 100
    return Intervals(
        Interval(*(float(x) for x in np.percentile(gains, [tail, 100 - tail]))),
        Interval(*(float(x) for x in np.percentile(changes, [tail, 100 - tail]))),
    )


@dataclass(frozen=True)
class Decision:
    """Whether to promote, why, and the numbers the decision read."""

    promote: bool
    reason: str
    numbers: dict[str, float] = field(default_factory=dict)


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    fraud_rate: float,
    policy: PromotionPolicy,
    *,
    degraded: Intervals | None = None,
) -> Decision:
    """Apply ``policy`` to metrics measured on the same holdout rows.

    ``degraded``: the champion is known to be degraded, and these are the bootstrap intervals of
    the differences; the challenger then needs only not to be shown worse.
    """
    numbers = {
        "challenger_pr_auc": challenger["pr_auc"],
        "challenger_log_loss": challenger["log_loss"],
        "fraud_rate": fraud_rate,
    }
    lift = challenger["pr_auc"] / fraud_rate if fraud_rate > 0 else 0.0
    numbers["challenger_lift"] = lift
    if lift < policy.min_lift:
        return Decision(
            False,
            f"not a valid model: PR-AUC {challenger['pr_auc']:.4f} is only {lift:.2f}x the "
            f"fraud rate {fraud_rate:.4f} (needs {policy.min_lift:.2f}x)",
            numbers,
        )
    if champion is None:
        return Decision(True, "no champion yet: the first valid model becomes champion", numbers)
    gain = challenger["pr_auc"] - champion["pr_auc"]
    loss_change = (challenger["log_loss"] - champion["log_loss"]) / max(champion["log_loss"], 1e-12)
    numbers.update(
        {
            "champion_pr_auc": champion["pr_auc"],
            "champion_log_loss": champion["log_loss"],
            "pr_auc_gain": gain,
            "log_loss_change": loss_change,
        }
    )
    if degraded is not None:
        return _against_a_degraded_champion(numbers, degraded, policy)
    if gain < policy.pr_auc_margin:
        return Decision(
            False,
            f"PR-AUC {challenger['pr_auc']:.4f} does not beat the champion's "
            f"{champion['pr_auc']:.4f} by the margin {policy.pr_auc_margin} (gain {gain:+.4f})",
            numbers,
        )
    if loss_change > policy.log_loss_tolerance:
        return Decision(
            False,
            f"log loss regresses by {loss_change:+.1%} ({champion['log_loss']:.4f} -> "
            f"{challenger['log_loss']:.4f}), beyond the tolerance {policy.log_loss_tolerance:.1%}",
            numbers,
        )
    return Decision(
        True,
        f"PR-AUC {challenger['pr_auc']:.4f} beats the champion's {champion['pr_auc']:.4f} by "
        f"{gain:+.4f}; log loss change {loss_change:+.1%} within tolerance",
        numbers,
    )


def _against_a_degraded_champion(
    numbers: dict[str, float], intervals: Intervals, policy: PromotionPolicy
) -> Decision:
    gain, change = intervals.pr_auc_gain, intervals.log_loss_change
    numbers.update(
        {
            "pr_auc_gain_low": gain.low,
            "pr_auc_gain_high": gain.high,
            "log_loss_change_low": change.low,
            "log_loss_change_high": change.high,
        }
    )
    level = f"{policy.confidence:.0%}"
    observed = (
        f"PR-AUC {numbers['challenger_pr_auc']:.4f} against the champion's "
        f"{numbers['champion_pr_auc']:.4f}, gain {numbers['pr_auc_gain']:+.4f} "
        f"({level} interval {gain.low:+.4f} to {gain.high:+.4f})"
    )
    if gain.high < 0:
        return Decision(
            False, f"the champion is degraded, but the challenger is worse: {observed}", numbers
        )
    if change.low > policy.log_loss_tolerance:
        return Decision(
            False,
            f"the champion is degraded, but the challenger's log loss is worse by "
            f"{numbers['log_loss_change']:+.1%} ({level} interval {change.low:+.1%} to "
            f"{change.high:+.1%}), beyond the tolerance {policy.log_loss_tolerance:.1%}",
            numbers,
        )
    return Decision(
        True,
        f"the champion is degraded and the challenger, trained on newer data, is not shown "
        f"worse: {observed}; log loss change {numbers['log_loss_change']:+.1%}",
        numbers,
    )
