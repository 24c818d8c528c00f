"""Assembly of the trainer from its settings: history, jobs, retrainer, app."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from bottega.auth import load_trainer_token
from services.trainer.api import build_app
from services.trainer.history import RunHistory
from services.trainer.jobs import Jobs, SubprocessJobs
from services.trainer.metrics import TrainerMetrics
from services.trainer.retrainer import Retrainer, RetrainPolicy
from services.trainer.settings import TrainerSettings


def policy_of(settings: TrainerSettings) -> RetrainPolicy:
    """The cooldown and retry policy from settings."""
    options = settings.retrain
    return RetrainPolicy(
        cooldown_s=options.cooldown_s,
        max_attempts=options.max_attempts,
        backoff_initial_s=options.backoff_initial_s,
        backoff_max_s=options.backoff_max_s,
    )


def subprocess_jobs(settings: TrainerSettings) -> SubprocessJobs:
    """The real jobs: the pipelines as child processes, with this process's settings."""
    options = settings.retrain
    return SubprocessJobs(
        settings.to_env(),
        cwd=settings.project_root,
        window=options.window,
        model=options.model,
        holdout=options.holdout,
        epochs=options.epochs,
        timeout_s=options.job_timeout_s,
        warm=options.warm_workers,
    )


def build_trainer(
    settings: TrainerSettings, *, jobs: Jobs | None = None
) -> tuple[FastAPI, Retrainer]:
    """The app and its retrainer (not started: the app's lifespan starts and stops it)."""
    registry = CollectorRegistry()
    metrics = TrainerMetrics(registry)
    history = RunHistory(settings.history_path)
    retrainer = Retrainer(jobs or subprocess_jobs(settings), history, policy_of(settings), metrics)
    app = build_app(
        retrainer,
        history,
        load_trainer_token(settings),
        registry,
        metrics,
        max_body_bytes=settings.retrain.max_body_bytes,
    )
    return app, retrainer
