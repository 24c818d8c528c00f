"""The fraud models and the scorer that MLflow stores: preprocessing bundled with the weights.

Serving loads :class:`FraudScorer` through ``mlflow.pyfunc`` and calls ``predict`` on a frame of
:data:`MODEL_FEATURES`; it needs this module and torch, never the training code. The scorer holds:

- the :class:`Preprocessor` fitted on the training rows (log scaling, standardisation, category
  vocabularies with an "unknown" slot);
- one of three scorers: the rule baseline's lookup table, or a torch module (logistic regression
  or an MLP with embeddings for the categoricals);
- the calibration map applied to the module's logit, which undoes the prior shift that negative
  downsampling or class weights cause (``logit + log(keep_rate)``), or a Platt fit on validation
  after focal loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc.model import PythonModel
from numpy.typing import NDArray
from torch import nn

from bottega.usecases.fraud.features.request import (
    CATEGORICAL_FEATURES,
    MODEL_FEATURES,
    NUMERIC_FEATURES,
)
from bottega.usecases.fraud.kinds import ModelKind

# A module's forward pass in numpy: (numeric matrix, category indices) to one logit per row.
NumpyLogits: TypeAlias = Callable[[NDArray[np.float32], NDArray[np.int64]], NDArray[np.float32]]
# A frame, or plain columns: feature name to one value per row (what the model server builds).
Columns: TypeAlias = pd.DataFrame | Mapping[str, Sequence[Any]]

# Heavy-tailed, non-negative features: scaled with log1p before standardisation.
LOG_SCALED = frozenset(
    {
        "amount_to_mean_7d",
        "txn_count_1h",
        "amount_sum_1h",
        "txn_count_24h",
        "amount_sum_24h",
        "txn_count_7d",
        "amount_mean_7d",
        "distinct_merchants_24h",
        "merchant_txn_count_30d",
    }
)


@dataclass
class Preprocessor:
    """Turns a frame of model features into a float matrix and category indices."""

    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    vocab: dict[str, dict[str, int]] = field(default_factory=dict)
    _mean_array: NDArray[np.float64] | None = field(default=None, repr=False, compare=False)
    _std_array: NDArray[np.float64] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Preprocessor:
        """Statistics and vocabularies of the training rows. Index 0 is the unknown category."""
        numeric = _scaled(frame)
        vocab = {
            name: {v: i + 1 for i, v in enumerate(sorted(frame[name].astype(str).unique()))}
            for name in CATEGORICAL_FEATURES
        }
        return cls(
            means={k: float(numeric[:, j].mean()) for j, k in enumerate(NUMERIC_FEATURES)},
            stds={k: float(numeric[:, j].std()) or 1.0 for j, k in enumerate(NUMERIC_FEATURES)},
            vocab=vocab,
        )

    def cardinalities(self) -> list[int]:
        """Embedding table sizes, the unknown slot included."""
        return [len(self.vocab[name]) + 1 for name in CATEGORICAL_FEATURES]

    def arrays(self, frame: Columns) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """(numeric float32 matrix, categorical int64 indices), as numpy arrays.

        With no per-row pandas work: the model server calls this for every request, often with
        one row, where pandas' per-call overhead would dominate.
        """
        missing = [name for name in MODEL_FEATURES if name not in frame]
        if missing:
            raise ValueError(f"missing model features: {', '.join(missing)}")
        if self._mean_array is None or self._std_array is None:
            self._mean_array = np.array([self.means[k] for k in NUMERIC_FEATURES])
            self._std_array = np.array([self.stds[k] for k in NUMERIC_FEATURES])
        x = ((_scaled(frame) - self._mean_array) / self._std_array).astype(np.float32)
        cats = np.empty((_length(frame), len(CATEGORICAL_FEATURES)), dtype=np.int64)
        for j, name in enumerate(CATEGORICAL_FEATURES):
            vocab = self.vocab[name]
            cats[:, j] = [vocab.get(str(v), 0) for v in frame[name]]
        return x, cats

    def transform(self, frame: Columns) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`arrays` as torch tensors."""
        x, cats = self.arrays(frame)
        return torch.from_numpy(x), torch.from_numpy(cats)

    def __getstate__(self) -> dict[str, Any]:
        # The cached arrays are derived: pickles (the MLflow model) hold only the statistics.
        return {"means": self.means, "stds": self.stds, "vocab": self.vocab}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.means, self.stds, self.vocab = state["means"], state["stds"], state["vocab"]
        self._mean_array = self._std_array = None


def _length(frame: Columns) -> int:
    return len(frame[MODEL_FEATURES[0]])


_LOG_COLUMNS = np.array([name in LOG_SCALED for name in NUMERIC_FEATURES])


def _scaled(frame: Columns) -> NDArray[np.float64]:
    """The numeric features as a float matrix: non-numbers and missing values are 0, and the
    heavy-tailed ones go through ``log1p`` (negatives clipped to 0 first)."""
    try:
        # All columns in one conversion (None becomes NaN): a handful of numpy calls in all,
        # where one row's column-by-column path below costs four per feature.
        matrix = np.array([frame[name] for name in NUMERIC_FEATURES], dtype=np.float64).T
    except (TypeError, ValueError):
        return _scaled_by_column(frame)
    out = np.where(np.isnan(matrix), 0.0, matrix)
    out[:, _LOG_COLUMNS] = np.log1p(np.clip(out[:, _LOG_COLUMNS], 0.0, None))
    return out


def _scaled_by_column(frame: Columns) -> NDArray[np.float64]:
    """:func:`_scaled` for columns numpy cannot convert at once (text, pandas' NA)."""
    out = np.empty((_length(frame), len(NUMERIC_FEATURES)), dtype=np.float64)
    for j, name in enumerate(NUMERIC_FEATURES):
        column = np.asarray(frame[name])
        if column.dtype.kind not in "fiub":
            column = pd.to_numeric(pd.Series(column), errors="coerce").to_numpy()
        values = np.nan_to_num(column.astype(np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf)
        out[:, j] = np.log1p(np.clip(values, 0.0, None)) if name in LOG_SCALED else values
    return out


class LogisticModule(nn.Module):
    """Logistic regression: one weight per numeric feature and per category (one-hot)."""

    def __init__(self, n_numeric: int, cardinalities: Sequence[int]) -> None:
        super().__init__()
        self.linear = nn.Linear(n_numeric, 1)
        self.onehot = nn.ModuleList(nn.Embedding(n, 1) for n in cardinalities)
        for table in self.onehot:
            assert isinstance(table, nn.Embedding)
            nn.init.zeros_(table.weight)

    def forward(self, x: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
        """The logit of each row."""
        logit: torch.Tensor = self.linear(x).squeeze(-1)
        for i, table in enumerate(self.onehot):
            logit = logit + table(cats[:, i]).squeeze(-1)
        return logit

    def as_numpy(self) -> NumpyLogits:
        """:meth:`forward` in numpy, over a copy of the weights as they are now."""
        weight = _weights(self.linear.weight)[0]
        bias = _weights(self.linear.bias)[0]
        tables = [_weights(table.weight)[:, 0] for table in self.onehot]

        def logits(x: NDArray[np.float32], cats: NDArray[np.int64]) -> NDArray[np.float32]:
            out: NDArray[np.float32] = x @ weight + bias
            for i, table in enumerate(tables):
                out = out + table[cats[:, i]]
            return out

        return logits


class MLPModule(nn.Module):
    """An MLP over the numeric features and an embedding of each categorical feature."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int],
        hidden: Sequence[int] = (32,),
        embedding_dim: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in cardinalities)
        layers: list[nn.Module] = []
        width = n_numeric + embedding_dim * len(cardinalities)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
        """The logit of each row."""
        embedded = [table(cats[:, i]) for i, table in enumerate(self.embeddings)]
        out: torch.Tensor = self.body(torch.cat([x, *embedded], dim=1)).squeeze(-1)
        return out

    def as_numpy(self) -> NumpyLogits:
        """:meth:`forward` at inference (dropout off) in numpy, over a copy of the weights."""
        tables = [_weights(table.weight) for table in self.embeddings]
        # (weight transposed, bias) for a linear layer; None for a ReLU.
        steps: list[tuple[NDArray[np.float32], NDArray[np.float32]] | None] = []
        for layer in self.body:
            if isinstance(layer, nn.Linear):
                steps.append((_weights(layer.weight).T.copy(), _weights(layer.bias)))
            elif isinstance(layer, nn.ReLU):
                steps.append(None)
            elif not isinstance(layer, nn.Dropout):  # dropout is the identity at inference
                raise TypeError(f"no numpy form for {type(layer).__name__}")

        def logits(x: NDArray[np.float32], cats: NDArray[np.int64]) -> NDArray[np.float32]:
            embedded = [table[cats[:, i]] for i, table in enumerate(tables)]
            out: NDArray[np.float32] = np.concatenate([x, *embedded], axis=1)
            for step in steps:
                out = np.maximum(out, 0.0) if step is None else out @ step[0] + step[1]
            return out[:, 0]

        return logits


def _weights(tensor: torch.Tensor | nn.Module) -> NDArray[np.float32]:
    # A submodule's parameter is typed as either by torch's ``__getattr__``.
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a weight tensor, got {type(tensor).__name__}")
    return np.array(tensor.detach().cpu().numpy(), dtype=np.float32)


def build_module(kind: ModelKind, pre: Preprocessor, hidden: Sequence[int] = (32,)) -> nn.Module:
    """The torch module of ``kind`` (``logreg`` or ``mlp``) for ``pre``'s inputs."""
    if kind == "logreg":
        return LogisticModule(len(NUMERIC_FEATURES), pre.cardinalities())
    if kind == "mlp":
        return MLPModule(len(NUMERIC_FEATURES), pre.cardinalities(), hidden=hidden)
    raise ValueError(f"no torch module for model kind {kind!r}")


# The rule baseline: what a fraud analyst writes before any model exists. Each rule that fires
# adds one; the score is the training fraud rate among rows that fired as many rules.
RULES: Mapping[str, tuple[str, float]] = {
    "amount_far_above_mean": ("amount_to_mean_7d", 3.0),
    "burst_1h": ("txn_count_1h", 4.0),
    "many_merchants_24h": ("distinct_merchants_24h", 6.0),
    "foreign": ("country_mismatch", 0.5),
    "new_device": ("device_changed", 0.5),
    "risky_merchant": ("merchant_fraud_rate_30d", 0.02),
}


def rules_fired(frame: pd.DataFrame) -> NDArray[np.int64]:
    """How many rules each row fires."""
    fired = np.zeros(len(frame), dtype=np.int64)
    for column, threshold in RULES.values():
        values = pd.to_numeric(frame[column], errors="coerce").fillna(0.0).to_numpy()
        fired += (values > threshold).astype(np.int64)
    return fired


def fit_rules(frame: pd.DataFrame, y: NDArray[np.int64]) -> list[float]:
    """The smoothed training fraud rate for each number of rules fired (0..len(RULES))."""
    fired = rules_fired(frame)
    prior = float(y.mean())
    table = []
    for k in range(len(RULES) + 1):
        mask = fired == k
        # Ten pseudo-rows at the prior keep an almost empty bucket from scoring 0 or 1.
        table.append(float((y[mask].sum() + 10 * prior) / (mask.sum() + 10)))
    return table


class FraudScorer(PythonModel):
    """A complete fraud model: features in, calibrated fraud probabilities out."""

    def __init__(
        self,
        kind: ModelKind,
        pre: Preprocessor,
        *,
        module: nn.Module | None = None,
        rule_rates: Sequence[float] = (),
        calibration: tuple[float, float] = (1.0, 0.0),
    ) -> None:
        self.kind = kind
        self.pre = pre
        self.module = module.cpu().eval() if module is not None else None
        self.rule_rates = list(rule_rates)
        self.calibration = calibration
        self._numpy: NumpyLogits | None = None

    def logits(self, frame: Columns) -> NDArray[np.float64]:
        """The module's raw logits (before calibration).

        On the CPU the module runs as numpy (:meth:`LogisticModule.as_numpy`): torch's
        dispatch costs tens of microseconds per operation, which is most of scoring one row.
        On a GPU it runs in torch.
        """
        if self.module is None:
            raise ValueError("the rule baseline has no logits")
        device = next(self.module.parameters()).device
        if device.type == "cpu":
            forward = self._numpy_logits()
            if forward is not None:
                return forward(*self.pre.arrays(frame)).astype(np.float64)
        x, cats = self.pre.transform(frame)
        with torch.no_grad():
            logits: NDArray[np.float64] = (
                self.module(x.to(device), cats.to(device)).double().cpu().numpy()
            )
        return logits

    def _numpy_logits(self) -> NumpyLogits | None:
        # Built on first use, from the weights as they are then: a scorer wraps a trained
        # module, which nothing trains further. A module without a numpy form runs in torch.
        forward: NumpyLogits | None = getattr(self, "_numpy", None)
        if forward is None:
            as_numpy = getattr(self.module, "as_numpy", None)
            forward = as_numpy() if callable(as_numpy) else None
            self._numpy = forward
        return forward

    def to(self, device: str) -> FraudScorer:
        """Move the torch module to ``device`` (``cpu``, ``cuda``); the rule table has none."""
        if self.module is not None:
            self.module = self.module.to(device)
            self._numpy = None
        return self

    def __getstate__(self) -> dict[str, Any]:
        # The numpy forward pass is derived from the module: the pickle holds the module only.
        state = dict(self.__dict__)
        state.pop("_numpy", None)
        return state

    def score(self, frame: Columns) -> NDArray[np.float64]:
        """Calibrated fraud probabilities, one per row."""
        if not isinstance(frame, pd.DataFrame) and self.kind == "rules":
            frame = pd.DataFrame(frame)
        if _length(frame) == 0:
            return np.zeros(0)
        if self.kind == "rules":
            fired = np.minimum(rules_fired(frame), len(self.rule_rates) - 1)
            return np.asarray(self.rule_rates, dtype=np.float64)[fired]
        a, b = self.calibration
        z = a * self.logits(frame) + b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def score_records(self, records: Sequence[Mapping[str, Any]]) -> NDArray[np.float64]:
        """``score`` on rows given as mappings (``request_features``' output), without pandas."""
        return self.score({name: [r[name] for r in records] for name in MODEL_FEATURES})

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> NDArray[np.float64]:
        """MLflow's entry point: ``score`` on a frame of MODEL_FEATURES."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.score(frame)


def prior_shift(keep_rate: float) -> tuple[float, float]:
    """The calibration map that undoes training on negatives kept at ``keep_rate``."""
    return (1.0, math.log(keep_rate))
