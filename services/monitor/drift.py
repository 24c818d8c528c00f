"""Feature and prediction drift of a window against the champion's reference sample, with
Evidently.

Every method and threshold is explicit (settings), never Evidently's per-type default, so the
numbers on a dashboard mean the same thing from one release of Evidently to the next. A report
costs about a second: the service runs it off the consume loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.metrics import ValueDrift
from evidently.presets import DataDriftPreset

from services.monitor.windows import Scored

SCORE = "score"


@dataclass(frozen=True)
class DriftConfig:
    """The features to test, and the method and threshold for each kind of column."""

    numerical: tuple[str, ...]
    categorical: tuple[str, ...]
    num_method: str = "wasserstein"
    num_threshold: float = 0.2
    cat_method: str = "jensenshannon"
    cat_threshold: float = 0.1
    prediction_method: str = "psi"
    prediction_threshold: float = 0.2

    @property
    def features(self) -> tuple[str, ...]:
        """Every tested feature."""
        return self.numerical + self.categorical

    def method_of(self, column: str) -> str:
        """The stattest used on ``column``."""
        if column == SCORE:
            return self.prediction_method
        return self.cat_method if column in self.categorical else self.num_method


@dataclass
class DriftResult:
    """What one window's report found."""

    feature_scores: dict[str, float] = field(default_factory=dict)
    drifted: dict[str, bool] = field(default_factory=dict)
    share: float = math.nan
    prediction_score: float = math.nan
    snapshot: Any = None

    def save_html(self, path: str) -> None:
        """Write the Evidently HTML report."""
        self.snapshot.save_html(path)


def frame_of(rows: list[Scored], columns: tuple[str, ...]) -> pd.DataFrame:
    """The window's feature values and scores, one row per prediction."""
    frame = pd.DataFrame([r.features for r in rows], columns=list(columns))
    frame[SCORE] = [r.score for r in rows]
    return frame


def analyze(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: DriftConfig,
    metadata: dict[str, str] | None = None,
) -> DriftResult:
    """Run the drift report of ``current`` against ``reference``."""
    columns = [*config.features, SCORE]
    definition = DataDefinition(
        numerical_columns=[*config.numerical, SCORE], categorical_columns=list(config.categorical)
    )
    ref = _typed(reference[columns], config)
    cur = _typed(current[columns], config)
    report = Report(
        [
            DataDriftPreset(
                columns=list(config.features),
                num_method=config.num_method,
                num_threshold=config.num_threshold,
                cat_method=config.cat_method,
                cat_threshold=config.cat_threshold,
            ),
            ValueDrift(
                column=SCORE,
                method=config.prediction_method,
                threshold=config.prediction_threshold,
            ),
        ],
        metadata=metadata or {},
        include_tests=True,
    )
    snapshot = report.run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    return _result(snapshot, config)


def _typed(frame: pd.DataFrame, config: DriftConfig) -> pd.DataFrame:
    out = frame.copy()
    for column in config.numerical:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    for column in config.categorical:
        out[column] = out[column].astype("string").fillna("")
    return out


def _result(snapshot: Any, config: DriftConfig) -> DriftResult:
    result = DriftResult(snapshot=snapshot)
    data = snapshot.dict()
    metric_columns: dict[str, str] = {}
    for metric in data["metrics"]:
        kind = metric["config"].get("type", "")
        if kind.endswith(":ValueDrift"):
            column = metric["config"]["column"]
            metric_columns[metric["id"]] = column
            value = float(metric["value"])
            if column == SCORE:
                result.prediction_score = value
            else:
                result.feature_scores[column] = value
        elif kind.endswith(":DriftedColumnsCount"):
            result.share = float(metric["value"]["share"])
    for test in data.get("tests", []):
        column = metric_columns.get(test.get("metric_config", {}).get("metric_id", ""))
        if column is not None and column != SCORE:
            result.drifted[column] = str(getattr(test["status"], "value", test["status"])) == "FAIL"
    return result
