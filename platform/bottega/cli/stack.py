"""``bottega up|down|status|logs|doctor``: the stack's commands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from bottega.cli.common import ModeChoice, app, console, err_console, run_cli, setup_logging
from bottega.errors import NotImplementedMode
from bottega.settings import load_settings
from bottega.stack.docker import choose_mode
from bottega.stack.runner import LocalStack, ServiceStatus
from bottega.stack.services import (
    alertmanager_prerequisite,
    build_local_stack,
    java_prerequisite,
    kafka_jars_prerequisite,
    prometheus_prerequisite,
)
from bottega.stack.settings import StackSettings
from bottega.stack.spec import Prerequisite

T = TypeVar("T")


ModeOption = Annotated[
    ModeChoice,
    typer.Option(
        "--mode",
        envvar="MODE",
        help="auto picks Docker when `docker info` succeeds, local mode otherwise.",
    ),
]
ServicesArg = Annotated[
    list[str] | None, typer.Argument(help="Services to act on (default: all).", show_default=False)
]

STATE_STYLE = {"healthy": "green", "unhealthy": "yellow", "stopped": "red"}


def _local_stack(mode: ModeChoice) -> tuple[StackSettings, LocalStack]:
    settings = load_settings(StackSettings)
    setup_logging(settings)
    chosen = choose_mode(mode.value)
    if chosen == "docker":
        if mode is ModeChoice.docker:
            raise NotImplementedMode(
                "Docker mode is not built yet; it arrives with the Docker-mode issue",
                hint="run local mode: MODE=local make up",
            )
        err_console.print(
            "[yellow]Docker is running, but Docker mode is not built yet: "
            "using local mode (set MODE=local to skip this check).[/]"
        )
    return settings, build_local_stack(settings)


def _status_table(rows: list[ServiceStatus]) -> Table:
    table = Table(title="Bottega stack", title_justify="left")
    table.add_column("service", style="bold")
    table.add_column("health")
    table.add_column("url")
    table.add_column("pid", justify="right")
    table.add_column("detail")
    for row in rows:
        style = STATE_STYLE[row.state]
        table.add_row(
            row.name, f"[{style}]{row.state}[/]", row.url, str(row.pid or "-"), row.detail
        )
    return table


@app.command()
def up(services: ServicesArg = None, mode: ModeOption = ModeChoice.auto) -> None:
    """Start the stack (or the named services and what they need), waiting until healthy."""

    def action() -> None:
        _, stack = _local_stack(mode)
        started_at = time.monotonic()
        report = stack.up(services)
        if report.started:
            console.print(
                f"started {', '.join(report.started)} in {time.monotonic() - started_at:.1f}s"
            )
        else:
            console.print("the stack is already running; nothing to start")
        console.print(_status_table(report.statuses))

    run_cli(action)


@app.command()
def down(services: ServicesArg = None, mode: ModeOption = ModeChoice.local) -> None:
    """Stop every process that `up` started, by its pid."""

    def action() -> None:
        _, stack = _local_stack(mode)
        stopped = stack.down(services)
        console.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")

    run_cli(action)


@app.command()
def status(mode: ModeOption = ModeChoice.local) -> None:
    """Print each service's health, URL and pid; exit 1 unless all are healthy."""

    def action() -> None:
        _, stack = _local_stack(mode)
        rows = stack.status()
        console.print(_status_table(rows))
        if any(row.state != "healthy" for row in rows):
            raise typer.Exit(1)

    run_cli(action)


@app.command()
def logs(
    service: Annotated[str | None, typer.Argument(help="One service (default: all).")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines to show from each.")] = 40,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
) -> None:
    """Show the services' logs from .bottega/logs."""

    def action() -> None:
        _, stack = _local_stack(ModeChoice.local)
        if service:
            stack.select([service])  # an unknown name is a clear error
            names = [service]  # its own log, not its dependencies'
        else:
            names = [spec.name for spec in stack.specs]
        paths = {name: stack.log_path(name) for name in names}
        positions: dict[str, int] = {}
        for name, path in paths.items():
            text = path.read_text(errors="replace") if path.exists() else ""
            for line in text.splitlines()[-lines:]:
                console.print(f"[cyan]{name:>12}[/] | {line}", markup=True, highlight=False)
            positions[name] = len(text.encode())
        while follow:
            time.sleep(0.5)
            for name, path in paths.items():
                positions[name] = _print_new_lines(name, path, positions.get(name, 0))

    run_cli(action)


def _print_new_lines(name: str, path: Path, position: int) -> int:
    if not path.exists():
        return position
    with path.open("rb") as handle:
        handle.seek(position)
        chunk = handle.read()
    for line in chunk.decode(errors="replace").splitlines():
        console.print(f"[cyan]{name:>12}[/] | {line}", highlight=False)
    return position + len(chunk)


@app.command()
def doctor() -> None:
    """Check the machine for what local mode needs; exit 1 if anything is missing."""

    def action() -> None:
        settings = load_settings(StackSettings)
        setup_logging(settings)
        checks: list[Prerequisite] = [
            java_prerequisite(settings),
            kafka_jars_prerequisite(settings),
            prometheus_prerequisite(settings),
            Prerequisite(
                "promtool", "install it: apt-get install -y prometheus", executables=("promtool",)
            ),
            alertmanager_prerequisite(settings),
            Prerequisite(
                "amtool",
                "install it: apt-get install -y prometheus-alertmanager",
                executables=("amtool",),
            ),
        ]
        missing = 0
        for check in checks:
            problem = check.problem()
            if problem is None:
                console.print(f"[green]ok[/]       {check.name:<18} {check.locate()}")
            else:
                missing += 1
                console.print(f"[red]missing[/]  {problem}: {check.install_hint}")
        if missing:
            raise typer.Exit(1)

    run_cli(action)
