"""The training job: data, split, fit, evaluate against the oracle, log to MLflow, register.

Registration is the job's last step, so a run that fails anywhere before it leaves no model
version behind: the MLflow run is marked FAILED, and the registry and its aliases are untouched.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import sklearn
import torch
from mlflow.models import infer_signature

from bottega.registry import (
    CHALLENGER,
    EXPERIMENTS,
    HOLDOUT_DIR,
    HOLDOUT_FILE,
    MODEL_NAMES,
    TAG_FINGERPRINT,
    TAG_HOLDOUT_CARDS,
    TAG_HOLDOUT_END,
    TAG_HOLDOUT_START,
    TAG_LABELS_AS_OF,
    TAG_MODEL_KIND,
    MlflowRegistry,
)
from bottega.settings import BottegaSettings
from bottega.usecases.fraud.features.definitions import FEATURE_SERVICE, FEATURE_SERVICE_VERSION
from bottega.usecases.fraud.features.request import MODEL_FEATURES
from bottega.usecases.fraud.metrics import evaluate
from bottega.usecases.fraud.store import FraudFeatureStore
from pipelines.train.config import TrainConfig
from pipelines.train.data import (
    JUST_AFTER,
    Split,
    card_split,
    default_end,
    fingerprint,
    load_window,
    reference_rows,
    time_split,
)
from pipelines.train.fit import EpochHook, fit, labels_of
from pipelines.train.plots import write_plots

log = logging.getLogger(__name__)

USECASE = "fraud"
EXAMPLE_ROWS = 5  # more than one: a one-row example would freeze the batch size


@dataclass(frozen=True)
class TrainReport:
    """What a training run did; printed as JSON by ``python -m pipelines.train``."""

    run_id: str
    version: str | None
    model: str
    device: str
    window_start: str
    window_end: str
    holdout_start: str
    rows: dict[str, int]
    fingerprint: str
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    # Where the seconds went: reading the window from the offline store, fitting, scoring and
    # logging to MLflow (the model, its reference sample and plots), registering.
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The report as plain values."""
        return asdict(self)


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model: pinning saves MLflow's slow inference of them."""
    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        f"scikit-learn=={sklearn.__version__}",
    ]


def holdout_metrics(split: Split, scores: np.ndarray) -> dict[str, float]:
    """The model's holdout metrics, with the oracle's on the same rows when all rows have one."""
    oracle = split.holdout["oracle"].to_numpy(np.float64)
    known = bool(np.isfinite(oracle).all())
    if not known:
        log.warning("the oracle is unknown for some holdout rows; no oracle metrics")
    return evaluate(labels_of(split.holdout), scores, oracle if known else None)


def _cards_tag(split: Split) -> dict[str, str]:
    if split.holdout_cards is None:
        return {}
    low, high = split.holdout_cards
    return {TAG_HOLDOUT_CARDS: f"{low!r}:{high!r}"}


def labels_cutoff(fs: FraudFeatureStore) -> datetime:
    """The default label cut-off: now, or just after the newest stored label if that is later.

    Under a replay the simulated clock can run ahead of the wall clock; a cut-off at the wall
    clock's now would then hide every replayed label.
    """
    now = datetime.now(UTC)
    newest = fs.newest_label_time()
    return max(now, newest + JUST_AFTER) if newest is not None else now


def train(
    settings: BottegaSettings,
    config: TrainConfig,
    *,
    fs: FraudFeatureStore | None = None,
    on_epoch: EpochHook | None = None,
    register: bool = True,
) -> TrainReport:
    """Run one training job end to end; return its report."""
    started = time.perf_counter()
    fs = fs or FraudFeatureStore(settings)
    end = config.end or default_end(fs)
    start = end - config.window
    labels_as_of = config.labels_as_of or labels_cutoff(fs)
    frame = load_window(fs, start, end, labels_as_of)
    stages = {"load": time.perf_counter() - started}
    splitter = card_split if config.holdout == "cards" else time_split
    split = splitter(frame, config.val_fraction, config.holdout_fraction)
    digest = fingerprint(frame)
    rows = {"train": len(split.train), "val": len(split.val), "holdout": len(split.holdout)}
    log.info("training set", extra={**rows, "frauds": int(frame["is_fraud"].sum())})

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(EXPERIMENTS[USECASE])
    with mlflow.start_run(run_name=f"{config.model}-{config.imbalance}") as run:
        mlflow.log_params(config.params())
        fitting = time.perf_counter()
        result = fit(split, config, on_epoch)
        stages["fit"] = time.perf_counter() - fitting
        logging_started = time.perf_counter()
        val_scores = result.scorer.score(split.val)
        scores = result.scorer.score(split.holdout)
        metrics = holdout_metrics(split, scores)
        val_metrics = evaluate(labels_of(split.val), val_scores)
        mlflow.log_params({"device_used": result.device, "rows_fitted": result.train_rows})
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        mlflow.log_metrics({f"val_{k}": v for k, v in val_metrics.items()})
        mlflow.log_metric("epochs_run", result.epochs_run)

        example = split.holdout[list(MODEL_FEATURES)].head(EXAMPLE_ROWS)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=result.scorer,
            signature=infer_signature(example, result.scorer.score(example)),
            input_example=example,
            pip_requirements=pip_requirements(),
        )
        window = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "labels_as_of": labels_as_of.isoformat(),
            "holdout_start": split.holdout_start.isoformat(),
            "rows": rows,
        }
        mlflow.log_dict(window, "training_window.json")
        mlflow.log_dict({"sha256": digest, "rows": len(frame)}, "data_fingerprint.json")
        mlflow.log_dict(
            {"name": FEATURE_SERVICE, "version": FEATURE_SERVICE_VERSION}, "feature_service.json"
        )
        mlflow.log_dict(metrics, "metrics/holdout.json")
        with tempfile.TemporaryDirectory() as tmp:
            reference = reference_rows(split, config.reference_rows, config.seed)[
                [*MODEL_FEATURES, "is_fraud"]
            ].copy()
            reference["score"] = result.scorer.score(reference)
            reference_path = Path(tmp) / "reference.parquet"
            reference.to_parquet(reference_path, index=False)
            mlflow.log_artifact(str(reference_path), "reference")
            # The rows the promotion judges both models on, kept with the version that
            # never saw them: the promotion reads them back instead of rebuilding them.
            holdout_path = Path(tmp) / HOLDOUT_FILE
            split.holdout.to_parquet(holdout_path, index=False)
            mlflow.log_artifact(str(holdout_path), HOLDOUT_DIR)
            plotted: dict[str, np.ndarray] = {config.model: scores}
            if "oracle_pr_auc" in metrics:
                plotted["oracle"] = split.holdout["oracle"].to_numpy(np.float64)
            for path in write_plots(
                Path(tmp) / "plots", labels_of(split.holdout), plotted, config.model
            ):
                mlflow.log_artifact(str(path), "plots")
        mlflow.set_tags({TAG_FINGERPRINT: digest, TAG_MODEL_KIND: config.model})

        stages["score_and_log"] = time.perf_counter() - logging_started
        registering = time.perf_counter()
        version = None
        if register:
            registered = mlflow.register_model(
                info.model_uri,
                MODEL_NAMES[USECASE],
                tags={
                    TAG_MODEL_KIND: config.model,
                    TAG_HOLDOUT_START: split.holdout_start.isoformat(),
                    TAG_HOLDOUT_END: end.isoformat(),
                    **_cards_tag(split),
                    TAG_LABELS_AS_OF: labels_as_of.isoformat(),
                    TAG_FINGERPRINT: digest,
                },
            )
            version = str(registered.version)
            MlflowRegistry(settings.mlflow_tracking_uri).set_alias(
                MODEL_NAMES[USECASE], CHALLENGER, version
            )
        stages["register"] = time.perf_counter() - registering
    report = TrainReport(
        run_id=run.info.run_id,
        version=version,
        model=config.model,
        device=result.device,
        window_start=start.isoformat(),
        window_end=end.isoformat(),
        holdout_start=split.holdout_start.isoformat(),
        rows=rows,
        fingerprint=digest,
        seconds=round(time.perf_counter() - started, 2),
        metrics=metrics,
        stage_seconds={name: round(value, 2) for name, value in stages.items()},
    )
    log.info("trained", extra={"run_id": report.run_id, "version": version})
    return report
