"""Offline metrics of a fraud score, and the same metrics for the oracle on the same rows.

PR-AUC (average precision) is the primary metric: with about one fraud in two hundred, ROC-AUC
is dominated by the easy negatives and says little about the alerts an analyst would see. Every
metric is also computed for the simulator's true probability (the oracle, the ceiling for any
model) on the very same rows, and the ratio model / oracle is reported, so a number is read
against what was achievable on that window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from bottega.errors import BottegaError

EPS = 1e-7
FIXED_PRECISION = 0.8
FIXED_FPR = 0.01
ECE_BINS = 15

# Ratios model / oracle are reported for these; the others are "lower is better" or not ratios.
RATIO_METRICS = ("pr_auc", "roc_auc", "recall_at_precision", "recall_at_1pct_fpr")


class MetricsError(BottegaError):
    """The metrics cannot be computed on these rows."""

    http_status = 400


@dataclass(frozen=True)
class Scored:
    """Labels and scores as numpy arrays, checked once."""

    y: NDArray[np.int64]
    score: NDArray[np.float64]

    @classmethod
    def of(cls, y: ArrayLike, score: ArrayLike) -> Scored:
        """Check shapes, ranges and that both classes are present."""
        labels = np.asarray(y).astype(np.int64).ravel()
        scores = np.asarray(score, dtype=np.float64).ravel()
        if labels.shape != scores.shape:
            raise MetricsError(f"{labels.size} labels for {scores.size} scores")
        if labels.size == 0:
            raise MetricsError("no rows to evaluate")
        if labels.min() == labels.max():
            raise MetricsError(f"only one class in {labels.size} rows: the metrics are undefined")
        if not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1:
            raise MetricsError("scores must be finite probabilities in [0, 1]")
        return cls(labels, scores)


def recall_at_precision(
    y: ArrayLike, score: ArrayLike, precision: float = FIXED_PRECISION
) -> float:
    """The highest recall reachable with a threshold whose precision is at least ``precision``."""
    s = Scored.of(y, score)
    order = np.argsort(-s.score, kind="stable")
    ys, ss = s.y[order], s.score[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    # Only the last row of each run of tied scores is a reachable threshold.
    last = np.r_[ss[1:] != ss[:-1], True]
    tp, fp = tp[last], fp[last]
    ok = tp / np.maximum(tp + fp, 1) >= precision
    return float(tp[ok].max() / s.y.sum()) if ok.any() else 0.0


def recall_at_fpr(y: ArrayLike, score: ArrayLike, fpr: float = FIXED_FPR) -> float:
    """The highest recall reachable with a threshold whose false positive rate is <= ``fpr``."""
    s = Scored.of(y, score)
    order = np.argsort(-s.score, kind="stable")
    ys, ss = s.y[order], s.score[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    last = np.r_[ss[1:] != ss[:-1], True]
    tp, fp = tp[last], fp[last]
    ok = fp / (len(ys) - s.y.sum()) <= fpr
    return float(tp[ok].max() / s.y.sum()) if ok.any() else 0.0


def expected_calibration_error(y: ArrayLike, score: ArrayLike, bins: int = ECE_BINS) -> float:
    """ECE over equal-width bins: the row-weighted mean |mean score - fraud rate| of each bin."""
    s = Scored.of(y, score)
    index = np.minimum((s.score * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(s.score[mask].mean() - s.y[mask].mean())
    return float(total / s.y.size)


def score_metrics(y: ArrayLike, score: ArrayLike) -> dict[str, float]:
    """Every offline metric of one score."""
    s = Scored.of(y, score)
    clipped = np.clip(s.score, EPS, 1 - EPS)
    return {
        "pr_auc": float(average_precision_score(s.y, s.score)),
        "roc_auc": float(roc_auc_score(s.y, s.score)),
        "log_loss": float(log_loss(s.y, clipped, labels=[0, 1])),
        "recall_at_precision": recall_at_precision(s.y, s.score),
        "recall_at_1pct_fpr": recall_at_fpr(s.y, s.score),
        "ece": expected_calibration_error(s.y, s.score),
    }


def evaluate(y: ArrayLike, score: ArrayLike, oracle: ArrayLike | None = None) -> dict[str, float]:
    """The model's metrics; with ``oracle``, also ``oracle_<m>`` and ``<m>_vs_oracle``.

    Besides the metrics, the result holds ``rows`` and ``frauds``.
    """
    s = Scored.of(y, score)
    out = score_metrics(s.y, s.score)
    if oracle is not None:
        theirs = score_metrics(s.y, oracle)
        out.update({f"oracle_{k}": v for k, v in theirs.items()})
        out.update(ratios(out, theirs))
    out["rows"] = float(s.y.size)
    out["frauds"] = float(s.y.sum())
    return out


def ratios(model: Mapping[str, float], oracle: Mapping[str, float]) -> dict[str, float]:
    """``<m>_vs_oracle`` for each higher-is-better metric."""
    return {f"{k}_vs_oracle": model[k] / oracle[k] if oracle[k] > 0 else 0.0 for k in RATIO_METRICS}
