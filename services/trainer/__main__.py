"""``python -m services.trainer``: serve the webhook and run retraining until SIGTERM."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from bottega.log import configure_logging
from bottega.settings import load_settings
from services.trainer.service import build_trainer
from services.trainer.settings import TrainerSettings

log = logging.getLogger("services.trainer")


def main() -> None:
    """Build the settings and the app; uvicorn handles SIGTERM and SIGINT."""
    settings = load_settings(TrainerSettings)
    configure_logging(settings.log_level, settings.log_format)
    app, retrainer = build_trainer(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        retrainer.start()
        log.info("trainer ready", extra={"port": settings.trainer.port})
        yield
        log.info("stopping")
        retrainer.stop()

    app.router.lifespan_context = lifespan
    uvicorn.run(
        app,
        host=settings.bind_host,
        port=settings.trainer.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
