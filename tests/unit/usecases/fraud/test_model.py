"""The bundled scorer: preprocessing, the rule baseline and the calibration correction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bottega.usecases.fraud.features.request import (
    CATEGORICAL_FEATURES,
    MODEL_FEATURES,
    NUMERIC_FEATURES,
)
from bottega.usecases.fraud.model import (
    FraudScorer,
    Preprocessor,
    build_module,
    fit_rules,
    prior_shift,
)


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {name: rng.uniform(0, 5, n) for name in NUMERIC_FEATURES}
    data["merchant_category"] = rng.choice(["grocery", "travel"], n)
    data["country"] = rng.choice(["IT", "FR", "DE"], n)
    return pd.DataFrame(data)


def test_unknown_categories_map_to_the_reserved_slot() -> None:
    pre = Preprocessor.fit(frame(100))
    unseen = frame(3).assign(country="ZZ")
    x, cats = pre.transform(unseen)
    assert x.shape == (3, len(NUMERIC_FEATURES))
    assert cats[:, CATEGORICAL_FEATURES.index("country")].tolist() == [0, 0, 0]


def test_missing_features_are_named() -> None:
    pre = Preprocessor.fit(frame(10))
    with pytest.raises(ValueError, match="log_amount"):
        pre.transform(frame(3).drop(columns=["log_amount"]))


def test_the_prior_shift_undoes_negative_downsampling() -> None:
    # A module that outputs the log-odds learnt on negatives kept at 10%: true odds x 10.
    pre = Preprocessor.fit(frame(50))
    module = build_module("logreg", pre)
    for p in module.parameters():
        torch.nn.init.zeros_(p)
    true_p = 0.01
    with torch.no_grad():
        module.linear.bias.fill_(math.log(true_p / (1 - true_p) / 0.1))
    scorer = FraudScorer("logreg", pre, module=module, calibration=prior_shift(0.1))
    np.testing.assert_allclose(scorer.score(frame(5)), true_p, rtol=1e-6)


def test_rules_score_the_training_rate_of_rows_firing_as_many_rules() -> None:
    rows = frame(2000)
    y = (rows["country_mismatch"] > 4).astype(np.int64).to_numpy()
    scorer = FraudScorer("rules", Preprocessor.fit(rows), rule_rates=fit_rules(rows, y))
    scores = scorer.score(rows)
    assert scores.min() >= 0 and scores.max() <= 1
    assert scores[y == 1].mean() > scores[y == 0].mean()


def test_predict_is_score_and_ignores_extra_columns() -> None:
    rows = frame(20)
    pre = Preprocessor.fit(rows)
    torch.manual_seed(0)
    scorer = FraudScorer("mlp", pre, module=build_module("mlp", pre))
    extra = rows.assign(card_id="c1")
    np.testing.assert_array_equal(
        scorer.predict(None, extra), scorer.score(rows[list(MODEL_FEATURES)])
    )


def test_the_numpy_transform_matches_the_pandas_definition() -> None:
    # The definition the first models were trained with, in plain pandas.
    from bottega.usecases.fraud.model import LOG_SCALED

    train = frame(200, seed=1)
    pre = Preprocessor.fit(train)
    rows = frame(50, seed=2)
    rows.loc[0, "txn_count_1h"] = -3.0  # clipped to 0 before log1p
    rows["amount_sum_1h"] = rows["amount_sum_1h"].astype(object)
    rows.loc[1, "amount_sum_1h"] = None  # missing: 0
    rows.loc[2, "amount_sum_1h"] = "not a number"  # coerced: 0
    rows.loc[3, "country"] = None  # unknown category
    expected = []
    for name in NUMERIC_FEATURES:
        values = pd.to_numeric(rows[name], errors="coerce").fillna(0.0).astype(np.float64)
        scaled = np.log1p(values.clip(lower=0.0)) if name in LOG_SCALED else values
        expected.append((scaled.to_numpy() - pre.means[name]) / pre.stds[name])
    x, cats = pre.transform(rows)
    np.testing.assert_allclose(x.numpy(), np.stack(expected, axis=1), rtol=1e-6, atol=1e-6)
    for j, name in enumerate(CATEGORICAL_FEATURES):
        want = rows[name].astype(str).map(pre.vocab[name]).fillna(0).to_numpy(np.int64)
        assert cats[:, j].tolist() == want.tolist()


def test_a_pickled_preprocessor_keeps_only_its_statistics() -> None:
    import pickle

    pre = Preprocessor.fit(frame(100))
    before = pre.transform(frame(5))[0]
    restored = pickle.loads(pickle.dumps(pre))
    assert set(pre.__getstate__()) == {"means", "stds", "vocab"}
    torch.testing.assert_close(restored.transform(frame(5))[0], before)


@pytest.mark.parametrize("kind", ["rules", "mlp"])
def test_scoring_records_matches_scoring_a_frame(kind: str) -> None:
    train = frame(300)
    y = (train["amount_to_mean_7d"] > 4).astype(np.int64).to_numpy()
    pre = Preprocessor.fit(train)
    if kind == "rules":
        scorer = FraudScorer("rules", pre, rule_rates=fit_rules(train, y))
    else:
        scorer = FraudScorer("mlp", pre, module=build_module("mlp", pre))
    rows = frame(7, seed=3)
    records = rows[list(MODEL_FEATURES)].to_dict(orient="records")
    np.testing.assert_allclose(scorer.score_records(records), scorer.score(rows), rtol=1e-12)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_the_numpy_forward_pass_gives_the_torch_logits(kind: str) -> None:
    rows = frame(300, seed=3)
    pre = Preprocessor.fit(rows)
    torch.manual_seed(0)
    module = build_module(kind, pre)
    for p in module.parameters():  # away from the zero init, so every weight matters
        torch.nn.init.normal_(p)
    scorer = FraudScorer(kind, pre, module=module)
    unseen = frame(50, seed=4).assign(country=["ZZ", "IT"] * 25)
    x, cats = pre.transform(unseen)
    with torch.no_grad():
        expected = scorer.module(x, cats).double().numpy()
    np.testing.assert_allclose(scorer.logits(unseen), expected, rtol=1e-5, atol=1e-5)
    # One row, as the model server scores it.
    one = {name: [unseen[name].iloc[0]] for name in MODEL_FEATURES}
    np.testing.assert_allclose(scorer.logits(one), expected[:1], rtol=1e-5, atol=1e-5)


def test_the_numpy_weights_are_not_pickled_and_follow_a_move() -> None:
    import pickle

    rows = frame(50)
    pre = Preprocessor.fit(rows)
    scorer = FraudScorer("logreg", pre, module=build_module("logreg", pre))
    before = scorer.score(rows)
    assert "_numpy" not in pickle.loads(pickle.dumps(scorer)).__dict__
    with torch.no_grad():
        scorer.module.linear.bias.fill_(3.0)
    scorer.to("cpu")  # a move rebuilds the numpy weights from the module
    assert (scorer.score(rows) > before).all()


def test_numeric_columns_convert_at_once_or_column_by_column_alike() -> None:
    rows = frame(6)
    records = {name: list(rows[name]) for name in MODEL_FEATURES}
    records["txn_count_1h"] = [None, float("nan"), float("inf"), -2.0, 1.0, 3.0]
    pre = Preprocessor.fit(rows)
    x, _ = pre.arrays(records)
    # Text in a numeric column takes the column-by-column path: "oops" is 0, like None.
    texts = {**records, "txn_count_1h": ["oops", float("nan"), float("inf"), -2.0, 1.0, 3.0]}
    y, _ = pre.arrays(texts)
    np.testing.assert_array_equal(x, y)
    column = NUMERIC_FEATURES.index("txn_count_1h")
    assert x[0, column] == x[1, column] == x[3, column]  # None, NaN and a clipped negative
    assert np.isinf(x[2, column])
