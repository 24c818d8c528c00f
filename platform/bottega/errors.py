"""Bottega's typed errors.

Every error a user can cause or fix is a :class:`BottegaError`. Each class carries the HTTP
status that services answer with and, where there is one, a hint that says what to do. The CLI
and the HTTP services map these to a one-line message; a user never sees a bare traceback for a
mistake they made.
"""

from __future__ import annotations

from pydantic import ValidationError


class BottegaError(Exception):
    """The root of Bottega's errors."""

    http_status: int = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(BottegaError):
    """A settings value or a config file is wrong."""

    http_status = 400


class PrerequisiteMissing(BottegaError):
    """A program or file that Bottega needs is not installed."""

    http_status = 500


class PortInUse(BottegaError):
    """A port that a service must bind is already taken."""

    http_status = 409

    def __init__(self, service: str, port: int, host: str) -> None:
        super().__init__(
            f"port {port} on {host}, needed by {service}, is already in use",
            hint=f"stop whatever holds it, or set a free port for {service}",
        )
        self.service = service
        self.port = port


class ServiceStartError(BottegaError):
    """A service exited, or never became healthy, while the stack was starting."""

    http_status = 503


class StackNotRunning(BottegaError):
    """An operation needs a running service that is not running."""

    http_status = 503


class SchemaError(BottegaError):
    """A message or request does not match its schema."""

    http_status = 422


def describe_validation_error(exc: ValidationError) -> str:
    """``field.path: reason; ...``: which fields are wrong and why, on one line."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "<input>"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
