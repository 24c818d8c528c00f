"""The monitor's HTTP API: metrics, health, and the per-window reports."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Response, status
from fastapi.responses import FileResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.monitor.service import MonitorService


def build_app(service: MonitorService) -> FastAPI:
    """The monitor's app over a (started or not) service."""
    app = FastAPI(title="Bottega monitor", docs_url=None, redoc_url=None)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/livez")
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        if service.ready:
            return Response("ready\n", media_type="text/plain")
        return Response("not ready\n", status_code=503, media_type="text/plain")

    @app.get("/reports")
    def reports() -> list[dict[str, Any]]:
        return service.reports.list()

    @app.get("/reports/{name}")
    def report(name: str) -> FileResponse:
        path = service.reports.html(name.removesuffix(".html"))
        if path is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no report {name}")
        return FileResponse(path, media_type="text/html")

    @app.get("/status")
    def state() -> dict[str, Any]:
        reference = service.reference
        predictions, labels = service.windows.sizes
        watermark = service.windows.watermark
        return {
            "reference_version": reference.version if reference else None,
            "watermark": watermark.isoformat() if watermark else None,
            "predictions_held": predictions,
            "labels_held": labels,
        }

    return app
