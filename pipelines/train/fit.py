"""Fitting the three fraud models, with the configured treatment of class imbalance.

- ``downsample``: keep each negative with probability ``keep_negatives``; the learned logit is
  then off by ``log(keep_negatives)``, which the scorer's calibration map takes back out.
- ``class_weights``: weight positives by ``pos_weight`` (default negatives / positives). In
  expectation this is downsampling at ``1 / pos_weight``, and is corrected the same way.
- ``focal``: focal loss has no closed-form prior; a Platt fit on the validation part
  recalibrates the logit.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from bottega.usecases.fraud.model import (
    FraudScorer,
    Preprocessor,
    build_module,
    fit_rules,
    prior_shift,
)
from pipelines.train.config import TrainConfig
from pipelines.train.data import Split

log = logging.getLogger(__name__)

EpochHook = Callable[[int, float], None]


@dataclass(frozen=True)
class FitResult:
    """A fitted scorer and how the fit went."""

    scorer: FraudScorer
    device: str
    epochs_run: int
    best_val_pr_auc: float
    train_rows: int


def seed_everything(seed: int) -> None:
    """Fix every random source the fit uses."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def choose_device(preference: str) -> torch.device:
    """CUDA when there is one (or when asked), else the CPU."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" or torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    """The labels as 0/1 ints."""
    labels: np.ndarray = frame["is_fraud"].astype(np.int64).to_numpy()
    return labels


def fit(split: Split, config: TrainConfig, on_epoch: EpochHook | None = None) -> FitResult:
    """Fit ``config.model`` on the train part, stopping early on validation PR-AUC."""
    seed_everything(config.seed)
    torch.set_num_threads(config.threads)
    train = split.train
    y_train = labels_of(train)
    if config.shuffle_labels:
        y_train = np.random.default_rng(config.seed).permutation(y_train)
    pre = Preprocessor.fit(train)
    if config.model == "rules":
        scorer = FraudScorer("rules", pre, rule_rates=fit_rules(train, y_train))
        val_pr = float(average_precision_score(labels_of(split.val), scorer.score(split.val)))
        return FitResult(scorer, "cpu", 0, val_pr, len(train))

    device = choose_device(config.device)
    rng = np.random.default_rng(config.seed)
    keep = np.ones(len(train), dtype=bool)
    calibration = (1.0, 0.0)
    pos_weight = 1.0
    if config.imbalance == "downsample":
        keep = (y_train == 1) | (rng.random(len(train)) < config.keep_negatives)
        calibration = prior_shift(config.keep_negatives)
    elif config.imbalance == "class_weights":
        pos_weight = config.pos_weight or float((y_train == 0).sum() / max(1, y_train.sum()))
        calibration = prior_shift(1.0 / pos_weight)

    x, cats = pre.transform(train[keep])
    y = torch.from_numpy(y_train[keep].astype(np.float32))
    x, cats, y = x.to(device), cats.to(device), y.to(device)
    x_val, cats_val = (t.to(device) for t in pre.transform(split.val))
    y_val = labels_of(split.val)

    module = build_module(config.model, pre, config.hidden).to(device)
    optimiser = torch.optim.Adam(
        module.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    best, stale, epochs = -1.0, 0, 0
    for epoch in range(config.epochs):
        module.train()
        order = torch.randperm(len(y), generator=generator).to(device)
        for i in range(0, len(order), config.batch_size):
            batch = order[i : i + config.batch_size]
            logits = module(x[batch], cats[batch])
            loss = _loss(logits, y[batch], config, pos_weight)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
        module.eval()
        with torch.no_grad():
            val_logits = module(x_val, cats_val).double().cpu().numpy()
        val_pr = float(average_precision_score(y_val, val_logits))
        epochs = epoch + 1
        log.info("epoch", extra={"epoch": epochs, "val_pr_auc": round(val_pr, 4)})
        if on_epoch is not None:
            on_epoch(epochs, val_pr)
        if val_pr > best:
            best, stale = val_pr, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    module.load_state_dict(best_state)
    module = module.cpu().eval()
    if config.imbalance == "focal":
        calibration = _platt(FraudScorer(config.model, pre, module=module).logits(split.val), y_val)
    scorer = FraudScorer(config.model, pre, module=module, calibration=calibration)
    return FitResult(scorer, str(device), epochs, best, int(keep.sum()))


def _loss(
    logits: torch.Tensor, y: torch.Tensor, config: TrainConfig, pos_weight: float
) -> torch.Tensor:
    if config.imbalance == "focal":
        p = torch.sigmoid(logits)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        return ((1 - p_t) ** config.focal_gamma * bce).mean()
    weight = torch.tensor(pos_weight, device=logits.device)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=weight)


def _platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` so that ``sigmoid(a * logit + b)`` is calibrated on the validation rows."""
    fitted = LogisticRegression(C=1e6).fit(logits.reshape(-1, 1), y)
    a, b = float(fitted.coef_[0][0]), float(fitted.intercept_[0])
    return (a, b) if math.isfinite(a) and math.isfinite(b) else (1.0, 0.0)
