"""Structured logging for every Bottega process.

``configure_logging`` is called once, from a process's ``main()``. Records are JSON lines by
default (one object per line, with ``ts``, ``level``, ``logger``, ``msg`` and any ``extra``
fields), or a compact console format for people.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and belongs in
# the structured output.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class ConsoleFormatter(logging.Formatter):
    """``time level logger: message key=value ...``, for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _RESERVED and not key.startswith("_")
        )
        line = (
            f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S')} "
            f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send every logger's records to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python logs every reconnect and httpx every request at INFO: keep them out.
    # Feast's DuckDB backend (ibis) warns of a duckdb deprecation on every offline read.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis(\..*)?")
    for noisy in ("kafka", "httpx", "httpcore", "feast"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
