"""The ``training`` benchmark: the three fraud models against the oracle on the baseline scenario.

One temporary home with a private MLflow server. The baseline scenario's history is backfilled
untimed (``--days``, ending at a fixed time, so every run sees the same events). Then each model
is trained by the real job, ``pipelines.train.job.train``, on the same window (``--window``): it
builds the point-in-time training set from Feast, splits by time, fits, evaluates on the newest
holdout, logs everything to MLflow and registers the version. All three models are judged on
the same holdout rows, where the oracle (the simulator's true probability) is scored too.

- ``pr_auc_<model>``: holdout PR-AUC, median over ``--repeats`` (seeds 0, 1, ...);
- ``pr_auc_oracle``: the oracle's holdout PR-AUC (the same rows each repeat);
- ``train_seconds``: wall time of one full MLP run (data, train, evaluate, log, register),
  median; the CPU unless a GPU is present (``device`` in the run's params says which);
- ratios ``mlp_vs_oracle`` and ``logreg_vs_oracle``: PR-AUC model / oracle.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime, timedelta

from bench.broker import private_mlflow
from bench.harness import Benchmark, Measurement, median
from bottega.usecases.fraud.scenario import parse_duration
from bottega.usecases.fraud.store import FraudFeatureStore

log = logging.getLogger(__name__)

# A fixed end, so that every run sees the same events; the baseline's steady phase runs until it.
END = datetime(2025, 3, 17, 18, tzinfo=UTC)
MODELS = ("rules", "logreg", "mlp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training benchmark's options."""
    parser.add_argument("--scenario", default="scenarios/baseline.yaml")
    parser.add_argument("--days", type=float, default=15.0, help="days of history to backfill")
    parser.add_argument("--window", default="14d", help="training window")
    parser.add_argument("--repeats", type=int, default=3, help="runs per model (seeds 0..n-1)")


def run(options: argparse.Namespace) -> Measurement:
    """Backfill, then train and evaluate each model; return the medians."""
    from pipelines.backfill.job import backfill
    from pipelines.train.config import TrainConfig
    from pipelines.train.job import train

    window: timedelta = parse_duration(options.window)
    pr_auc: dict[str, list[float]] = {m: [] for m in MODELS}
    oracle: list[float] = []
    seconds: list[float] = []
    with private_mlflow() as settings:
        fs = FraudFeatureStore(settings)
        report = backfill(fs, settings.project_root / options.scenario, days=options.days, end=END)
        log.info("backfilled", extra=report.to_dict())
        for seed in range(options.repeats):
            for model in MODELS:
                config = TrainConfig(model=model, window=window, end=END, seed=seed)
                trained = train(settings, config, fs=fs)
                pr_auc[model].append(trained.metrics["pr_auc"])
                oracle.append(trained.metrics["oracle_pr_auc"])
                if model == "mlp":
                    seconds.append(trained.seconds)
                log.info(
                    "trained",
                    extra={
                        "model": model,
                        "seed": seed,
                        "pr_auc": round(trained.metrics["pr_auc"], 4),
                        "oracle_pr_auc": round(trained.metrics["oracle_pr_auc"], 4),
                        "seconds": trained.seconds,
                        "device": trained.device,
                    },
                )
    metrics = {f"pr_auc_{m}": median(v) for m, v in pr_auc.items()}
    metrics["pr_auc_oracle"] = median(oracle)
    metrics["train_seconds"] = median(seconds)
    return Measurement(
        metrics=metrics,
        ratios={
            "mlp_vs_oracle": metrics["pr_auc_mlp"] / metrics["pr_auc_oracle"],
            "logreg_vs_oracle": metrics["pr_auc_logreg"] / metrics["pr_auc_oracle"],
        },
    )


BENCHMARK = Benchmark(
    name="training",
    summary="fraud models vs the oracle on the baseline scenario; full training run time",
    add_arguments=add_arguments,
    run=run,
)
