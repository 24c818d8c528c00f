"""``python -m services.ingest``: run the ingest until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading

from bottega.log import configure_logging
from bottega.settings import load_settings
from services.ingest.service import IngestService
from services.ingest.settings import IngestSettings

log = logging.getLogger("services.ingest")


def main() -> None:
    """Build the settings and the service, and run until told to stop."""
    settings = load_settings(IngestSettings)
    configure_logging(settings.log_level, settings.log_format)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service = IngestService(settings).start()
    stop.wait()
    log.info("stopping")
    service.stop()


if __name__ == "__main__":
    main()
