"""Behavioural checks on a freshly trained model: invariance, direction, minimum function."""

from __future__ import annotations

import math

import numpy as np

from bottega.usecases.fraud.features.request import MODEL_FEATURES

from .conftest import Trained, holdout


def test_the_card_id_alone_does_not_change_the_score(trained: Trained) -> None:
    rows = holdout(trained).head(500)
    assert "card_id" not in MODEL_FEATURES
    renamed = rows.assign(card_id=[f"card-{i:06d}" for i in range(len(rows))])
    np.testing.assert_array_equal(trained.scorer.score(rows), trained.scorer.score(renamed))


def test_a_large_foreign_amount_raises_the_score(trained: Trained) -> None:
    rows = holdout(trained)
    rows = rows[
        ~rows["is_fraud"] & (rows["country_mismatch"] == 0) & (rows["amount_mean_7d"] > 0)
    ].head(500)
    countries = sorted(rows["country"].unique())
    foreign = rows.copy()
    amount = foreign["amount_mean_7d"] * 10
    foreign["log_amount"] = np.log1p(amount)
    foreign["amount_to_mean_7d"] = 10.0
    foreign["country_mismatch"] = 1.0
    foreign["country"] = [
        next(c for c in countries if c != home) if len(countries) > 1 else "ZZ"
        for home in rows["country"]
    ]
    before, after = trained.scorer.score(rows), trained.scorer.score(foreign)
    assert (after > before).mean() >= 0.9
    assert math.log(after.mean()) - math.log(before.mean()) > math.log(5)


def test_known_fraud_bursts_score_above_the_threshold(trained: Trained) -> None:
    rows = holdout(trained, with_validation=True)
    # The later payments of a card-testing burst: the card's history already shows the burst.
    bursts = rows[
        rows["is_fraud"] & (rows["pattern"] == "card_testing") & (rows["txn_count_1h"] >= 2)
    ]
    assert len(bursts) >= 10
    above = trained.scorer.score(bursts) >= trained.threshold
    assert above.mean() >= 0.8, f"{above.sum()} of {len(bursts)} above {trained.threshold:.4f}"
