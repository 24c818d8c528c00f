"""The offline metrics, checked against hand-computed values and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from bottega.usecases.fraud.metrics import (
    MetricsError,
    evaluate,
    expected_calibration_error,
    recall_at_fpr,
    recall_at_precision,
)

Y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_recall_at_precision_takes_the_deepest_threshold_that_keeps_precision() -> None:
    # Top 1: P=1, R=1/3. Top 3: P=2/3, R=2/3. Top 6: P=1/2, R=1.
    assert recall_at_precision(Y, S, 1.0) == pytest.approx(1 / 3)
    assert recall_at_precision(Y, S, 0.6) == pytest.approx(2 / 3)
    assert recall_at_precision(Y, S, 0.5) == pytest.approx(1.0)


def test_recall_at_precision_ignores_thresholds_inside_a_tie() -> None:
    # One threshold only: everything, P = 1/2.
    assert recall_at_precision([1, 0], [0.5, 0.5], 0.9) == 0.0


def test_recall_at_fpr() -> None:
    # 7 negatives: 1% FPR allows none above the threshold.
    assert recall_at_fpr(Y, S, 0.01) == pytest.approx(1 / 3)
    assert recall_at_fpr(Y, S, 2 / 7) == pytest.approx(2 / 3)


def test_ece_is_zero_for_a_calibrated_score_and_large_for_an_overconfident_one() -> None:
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(y, np.full(10, 0.2)) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(10, 0.9)) == pytest.approx(0.7)


def test_evaluate_reports_the_oracle_and_ratios_on_the_same_rows() -> None:
    rng = np.random.default_rng(0)
    oracle = rng.uniform(0, 0.2, 5000)
    y = rng.random(5000) < oracle
    noisy = np.clip(oracle + rng.normal(0, 0.05, 5000), 0, 1)
    out = evaluate(y, noisy, oracle)
    assert out["pr_auc"] == pytest.approx(average_precision_score(y, noisy))
    assert out["oracle_pr_auc"] == pytest.approx(average_precision_score(y, oracle))
    assert out["pr_auc_vs_oracle"] == pytest.approx(out["pr_auc"] / out["oracle_pr_auc"])
    assert out["pr_auc"] < out["oracle_pr_auc"]
    assert out["log_loss"] > out["oracle_log_loss"]
    assert out["rows"] == 5000 and out["frauds"] == y.sum()


@pytest.mark.parametrize(
    ("y", "score", "message"),
    [
        ([], [], "no rows"),
        ([0, 0], [0.1, 0.2], "one class"),
        ([0, 1], [0.1], "labels for"),
        ([0, 1], [0.1, 1.5], "probabilities"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_message(
    y: list[int], score: list[float], message: str
) -> None:
    with pytest.raises(MetricsError, match=message):
        evaluate(y, score)
