"""The promotion policy: a pure decision on two sets of holdout metrics.

A challenger replaces the champion only when, on the same newest holdout rows, its PR-AUC beats
the champion's by at least ``pr_auc_margin`` and its log loss is no worse than the champion's
by more than ``log_loss_tolerance`` (relative). With no champion, the first *valid* model
becomes champion: valid means it ranks frauds clearly better than chance (PR-AUC at least
``min_lift`` times the holdout's fraud rate, the PR-AUC of a random score).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field


class PromotionPolicy(BaseModel):
    """The policy's thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pr_auc_margin: float = Field(default=0.005, ge=0, description="Absolute PR-AUC gain needed.")
    log_loss_tolerance: float = Field(
        default=0.02, ge=0, description="Allowed relative increase of log loss."
    )
    min_lift: float = Field(default=2.0, ge=1, description="Validity: PR-AUC / fraud rate.")


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
) -> Decision:
    """Apply ``policy`` to metrics measured on the same holdout rows."""
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
