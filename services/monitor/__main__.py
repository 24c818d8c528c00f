"""``python -m services.monitor``: consume, window, analyze and serve until SIGTERM."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from bottega.log import configure_logging
from bottega.settings import load_settings
from services.monitor.api import build_app
from services.monitor.service import MonitorService
from services.monitor.settings import MonitorSettings

log = logging.getLogger("services.monitor")


def main() -> None:
    """Build the settings, the service and its app; uvicorn handles SIGTERM and SIGINT."""
    settings = load_settings(MonitorSettings)
    configure_logging(settings.log_level, settings.log_format)
    service = MonitorService(settings)
    app = build_app(service)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        log.info("stopping")
        service.stop()

    app.router.lifespan_context = lifespan
    uvicorn.run(
        app, host=settings.bind_host, port=settings.monitor.port, log_config=None, access_log=False
    )


if __name__ == "__main__":
    main()
