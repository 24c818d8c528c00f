"""A freshly trained MLP on fresh simulated history: backfilled, split and fitted by the
training pipeline's own steps (no MLflow needed), once per session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bottega.settings import BottegaSettings
from bottega.usecases.fraud.metrics import recall_at_fpr
from bottega.usecases.fraud.model import FraudScorer
from bottega.usecases.fraud.store import FraudFeatureStore
from pipelines.backfill.job import backfill
from pipelines.train.config import TrainConfig
from pipelines.train.data import Split, load_window, time_split
from pipelines.train.fit import fit

END = datetime(2025, 3, 7, tzinfo=UTC)


@dataclass(frozen=True)
class Trained:
    scorer: FraudScorer
    split: Split
    threshold: float  # the operating point: 1% false positives on validation
    patterns: dict[str, str]  # event_id -> simulated pattern


@pytest.fixture(scope="session")
def trained(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    home = tmp_path_factory.mktemp("model-home")
    settings = BottegaSettings(_env_file=None, project_root=project_root, home=home)  # type: ignore[call-arg]
    fs = FraudFeatureStore(settings)
    backfill(fs, project_root / "scenarios" / "baseline.yaml", days=4, end=END)
    config = TrainConfig(model="mlp", window=timedelta(days=4), end=END)
    frame = load_window(fs, END - config.window, END, None)
    split = time_split(frame, config.val_fraction, config.holdout_fraction)
    result = fit(split, config)
    val_scores = result.scorer.score(split.val)
    legit = np.sort(val_scores[~split.val["is_fraud"].to_numpy(bool)])
    threshold = float(legit[int(0.99 * len(legit))])
    assert recall_at_fpr(split.val["is_fraud"], val_scores) > 0
    rows = fs.oracle.query("SELECT event_id, pattern FROM t").to_pylist()
    return Trained(result.scorer, split, threshold, {r["event_id"]: r["pattern"] for r in rows})


def holdout(trained: Trained, *, with_validation: bool = False) -> pd.DataFrame:
    """The holdout rows (and the validation rows: also never trained on) with their pattern."""
    parts = (
        [trained.split.val, trained.split.holdout] if with_validation else [trained.split.holdout]
    )
    frame = pd.concat(parts, ignore_index=True)
    frame["pattern"] = frame["event_id"].map(trained.patterns)
    return frame
