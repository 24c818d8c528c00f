"""One worker's runtime: everything the service builds in a worker, started and stopped as one.

``ServingRuntime.build(settings)`` wires the warm feature store, the model slots and their
watcher, the prediction log, the shadow scorer and the HTTP app. The BentoML service calls it in
each worker; a test can call it in-process too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI
from prometheus_client import REGISTRY

from bottega.bus.journal import Journal
from bottega.registry import MODEL_NAMES
from services.serving.app import build_app
from services.serving.features import OnlineFeatures
from services.serving.lifecycle import ModelRefresher, ModelWatcher
from services.serving.metrics import ServingMetrics
from services.serving.models import (
    MlflowModelSource,
    ModelSlots,
    limit_torch_threads,
    resolve_device,
)
from services.serving.prediction_log import PredictionLog
from services.serving.predictor import Predictor
from services.serving.settings import ServingSettings
from services.serving.shadow import ShadowScorer

log = logging.getLogger(__name__)


@dataclass
class ServingRuntime:
    """The parts of one worker, and the app over them."""

    settings: ServingSettings
    slots: ModelSlots
    refresher: ModelRefresher
    watcher: ModelWatcher
    prediction_log: PredictionLog
    shadow: ShadowScorer | None
    app: FastAPI

    @classmethod
    def build(cls, settings: ServingSettings) -> ServingRuntime:
        """Build and start a worker's runtime: the first model load happens here."""
        options = settings.serve
        metrics = ServingMetrics(REGISTRY)
        limit_torch_threads(options.torch_threads)
        device = resolve_device(options.device)
        name = MODEL_NAMES[options.usecase]
        slots = ModelSlots()
        source = MlflowModelSource(
            settings.mlflow_tracking_uri, name, settings.model_cache_dir, device
        )
        refresher = ModelRefresher(source, slots, metrics, shadow=options.shadow)
        refresher.refresh("start")
        features = OnlineFeatures.from_settings(settings)
        journal = Journal(settings.prediction_journal_dir) if options.prediction_journal else None
        prediction_log = PredictionLog.for_kafka(
            settings.kafka, metrics, capacity=options.log_buffer, journal=journal
        ).start()
        shadow = (
            ShadowScorer(
                prediction_log, metrics, threshold=options.threshold, capacity=options.shadow_queue
            ).start()
            if options.shadow
            else None
        )
        predictor = Predictor(
            features,
            slots,
            prediction_log,
            metrics,
            threshold=options.threshold,
            shadow=shadow,
        )
        watcher = ModelWatcher(refresher, settings.kafka, name, options.poll_interval_s).start()
        app = build_app(
            predictor,
            slots,
            metrics,
            device=device,
            max_batch=options.max_batch,
            max_body_bytes=options.max_body_bytes,
        )
        log.info(
            "serving worker ready",
            extra={
                "device": device,
                "champion": slots.champion.version if slots.champion else None,
                "degraded": slots.degraded,
            },
        )
        return cls(settings, slots, refresher, watcher, prediction_log, shadow, app)

    @property
    def ready(self) -> bool:
        """Ready to score: a champion is loaded (from the registry or the cache)."""
        return self.slots.champion is not None

    def stop(self) -> None:
        """Stop the watcher, the shadow scorer, then flush the prediction log."""
        self.watcher.stop()
        if self.shadow is not None:
            self.shadow.stop()
        self.prediction_log.stop()
