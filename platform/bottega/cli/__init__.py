"""The ``bottega`` command line: the platform's front door, for people."""

from bottega.cli import stack  # isort: skip  (registers the stack's commands first)
from bottega.cli import (
    data,  # registers the data commands
    demo,  # registers bottega demo
    models,  # registers the model lifecycle commands
    replay,  # registers bottega replay
)
from bottega.cli.common import app

__all__ = ["app", "data", "demo", "main", "models", "replay", "stack"]


def main() -> None:
    """Entry point of the ``bottega`` console script."""
    app()
