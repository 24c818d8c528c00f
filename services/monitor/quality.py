"""Online quality of a window's labelled predictions.

Only labelled predictions enter PR-AUC, precision, recall and log loss; the unlabelled ones
count in the label coverage alone. A metric that the rows cannot define (PR-AUC with no fraud,
precision with no alert raised) is NaN, which Prometheus exports as such and every alert
comparison treats as false, rather than a made-up 0.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
from sklearn.metrics import average_precision_score, log_loss

from services.monitor.windows import Window

NAN = math.nan
EPS = 1e-7
ONLINE_METRICS = (
    "pr_auc",
    "precision",
    "recall",
    "log_loss",
    "label_coverage",
    "label_delay_seconds",
    "labelled",
    "labelled_frauds",
)


def online_quality(window: Window) -> dict[str, float]:
    """Every online metric of ``window`` (NaN where undefined)."""
    out = dict.fromkeys(ONLINE_METRICS, NAN)
    rows = window.labelled
    out["labelled"] = float(len(rows))
    out["label_coverage"] = len(rows) / window.quality_rows if window.quality_rows else NAN
    if window.label_delays_s:
        out["label_delay_seconds"] = float(statistics.median(window.label_delays_s))
    if not rows:
        out["labelled_frauds"] = 0.0
        return out
    y = np.array([r.is_fraud for r in rows], dtype=np.int64)
    score = np.array([r.score for r in rows], dtype=np.float64)
    decision = np.array([r.decision for r in rows], dtype=bool)
    frauds = int(y.sum())
    out["labelled_frauds"] = float(frauds)
    out["log_loss"] = float(log_loss(y, np.clip(score, EPS, 1 - EPS), labels=[0, 1]))
    true_pos = int((decision & (y == 1)).sum())
    if frauds:
        out["recall"] = true_pos / frauds
    if decision.any():
        out["precision"] = true_pos / int(decision.sum())
    if 0 < frauds < len(y):
        out["pr_auc"] = float(average_precision_score(y, score))
    return out
