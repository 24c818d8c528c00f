"""What every ``bottega`` command shares: the Typer app, the consoles, and error handling.

The CLI talks to people through rich; everything below it logs structurally.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

import typer
from rich.console import Console

from bottega.errors import BottegaError
from bottega.log import configure_logging
from bottega.settings import BottegaSettings

app = typer.Typer(
    name="bottega",
    help="Bottega: a production ML platform in miniature.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


class ModeChoice(StrEnum):
    """How to run the stack."""

    auto = "auto"
    local = "local"
    docker = "docker"


def setup_logging(settings: BottegaSettings) -> None:
    """Logs for a person at a terminal."""
    configure_logging(settings.log_level, "console")


def run_cli(action: Callable[[], T]) -> T:
    """Run ``action``; a BottegaError becomes one red line and exit status 1."""
    try:
        return action()
    except BottegaError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if exc.hint:
            err_console.print(f"[dim]hint:[/] {exc.hint}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:
        # MLflow's own errors (the server down, say), told without importing MLflow here.
        if not type(exc).__module__.startswith("mlflow"):
            raise
        from bottega.registry import registry_failure

        err_console.print(f"[bold red]error:[/] {registry_failure(exc)}", highlight=False)
        err_console.print("[dim]hint:[/] is the stack up? bottega status", highlight=False)
        raise typer.Exit(1) from None
