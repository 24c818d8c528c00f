"""``bottega up|down|status|logs|doctor``: the stack's commands."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from bottega.cli.common import ModeChoice, app, console, run_cli, setup_logging
from bottega.cli.docker_mode import docker_down, docker_up
from bottega.errors import ConfigError
from bottega.settings import load_settings
from bottega.stack.compose import (
    TOOLS_SERVICE,
    ComposeProject,
    container_statuses,
    published_url,
)
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

STATE_STYLE = {
    "healthy": "green",
    "starting": "yellow",
    "unhealthy": "yellow",
    "stopped": "red",
    "completed": "blue",
}


def _settings() -> StackSettings:
    settings = load_settings(StackSettings)
    setup_logging(settings)
    return settings


def _local_stack(settings: StackSettings) -> LocalStack:
    return build_local_stack(settings)


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


def all_up(rows: list[ServiceStatus]) -> bool:
    """Every service healthy, and every one-shot job completed."""
    return all(row.state in ("healthy", "completed") for row in rows)


def without_mode_option(argv: Sequence[str]) -> list[str]:
    """A command line less its ``--mode X`` (or ``--mode=X``)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--mode":
            skip = True
        elif not arg.startswith("--mode="):
            out.append(arg)
    return out


def forward_to_tools_container(mode: ModeChoice) -> None:
    """In Docker mode, run this very command in the compose project's ``cli`` container and
    exit with its status: Kafka is not published on the host, the compose network reaches it.
    In local mode, return and let the command run here."""
    if choose_mode(mode.value) != "docker":
        return
    argv = without_mode_option(sys.argv[1:])
    code = run_cli(lambda: ComposeProject(_settings()).run("run", "--rm", TOOLS_SERVICE, *argv))
    raise typer.Exit(code)


@app.command()
def mode(mode: ModeOption = ModeChoice.auto) -> None:
    """Print the mode `up` would use: docker or local."""
    console.print(choose_mode(mode.value), highlight=False)


@app.command()
def up(
    services: ServicesArg = None,
    mode: ModeOption = ModeChoice.auto,
    gpu: Annotated[
        bool, typer.Option("--gpu", envvar="GPU", help="Docker mode: a GPU for serving, training.")
    ] = False,
) -> None:
    """Start the stack (or the named services and what they need), waiting until healthy."""

    def action() -> None:
        settings = _settings()
        started_at = time.monotonic()
        if choose_mode(mode.value) == "docker":
            docker_up(settings, services or (), gpu=gpu)
            console.print(f"Docker mode is up in {time.monotonic() - started_at:.0f}s")
            rows = container_statuses(settings)
            console.print(_status_table(rows))
            console.print(_open_hint(settings, grafana=any(r.name == "grafana" for r in rows)))
            return
        report = _local_stack(settings).up(services)
        if report.started:
            console.print(
                f"started {', '.join(report.started)} in {time.monotonic() - started_at:.1f}s"
            )
        else:
            console.print("the stack is already running; nothing to start")
        console.print(_status_table(report.statuses))

    run_cli(action)


def _open_hint(settings: StackSettings, *, grafana: bool) -> str:
    dashboards = (
        f"Grafana {published_url(settings, 'grafana')} (dashboard: Bottega drift) | "
        if grafana
        else ""
    )
    return (
        f"open: {dashboards}MLflow {published_url(settings, 'mlflow')} | "
        f"Prometheus {published_url(settings, 'prometheus')}/alerts"
    )


@app.command()
def down(
    services: ServicesArg = None,
    mode: ModeOption = ModeChoice.auto,
    volumes: Annotated[
        bool,
        typer.Option(
            "--volumes",
            help="Docker mode: delete the volumes too (the champion, Kafka's log, the store).",
        ),
    ] = False,
) -> None:
    """Stop every process that `up` started, by its pid (Docker mode: its containers; the
    volumes are kept unless --volumes)."""

    def action() -> None:
        settings = _settings()
        if choose_mode(mode.value) == "docker":
            if volumes and services:
                raise ConfigError("--volumes deletes the whole stack's state: name no service")
            before = docker_down(settings, services or (), volumes=volumes)
            names = ", ".join(row.name for row in before)
            kept = (
                "; the volumes are deleted"
                if volumes
                else ("; the volumes are kept (the champion, Kafka, the store)")
            )
            console.print(
                (f"stopped {names}" if before else "nothing was running")
                + ("" if services else kept),
                highlight=False,
            )
            return
        if volumes:
            raise ConfigError(
                "--volumes is Docker mode's",
                hint="local mode keeps its state in .bottega/: make clean",
            )
        stopped = _local_stack(settings).down(services)
        console.print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")

    run_cli(action)


@app.command()
def status(mode: ModeOption = ModeChoice.auto) -> None:
    """Print each service's health, URL and pid; exit 1 unless all are healthy (Docker mode:
    each container's health, from the Docker engine)."""

    def action() -> None:
        settings = _settings()
        if choose_mode(mode.value) == "docker":
            rows = container_statuses(settings)
        else:
            rows = _local_stack(settings).status()
        console.print(_status_table(rows))
        if not all_up(rows):
            raise typer.Exit(1)

    run_cli(action)


@app.command()
def logs(
    service: Annotated[str | None, typer.Argument(help="One service (default: all).")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines to show from each.")] = 40,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    mode: ModeOption = ModeChoice.auto,
) -> None:
    """Show the services' logs from .bottega/logs (Docker mode: docker compose logs)."""

    def action() -> None:
        settings = _settings()
        if choose_mode(mode.value) == "docker":
            args = ["logs", "--tail", str(lines), *(["--follow"] if follow else [])]
            code = ComposeProject(settings).run(*args, *([service] if service else []))
            if code != 0:
                raise typer.Exit(code)
            return
        stack = _local_stack(settings)
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


@app.command("create-topics")
def create_topics_command() -> None:
    """Create Bottega's topics on the broker, those that do not exist yet (Docker mode's
    kafka-init job; local mode does this once Kafka is healthy)."""

    def action() -> None:
        from bottega.bus import create_topics
        from bottega.events import all_topics

        settings = _settings()
        created = create_topics(settings.kafka, all_topics())
        console.print(f"created {', '.join(created)}" if created else "every topic exists")

    run_cli(action)


@app.command("write-trainer-token", hidden=True)
def write_trainer_token(
    path: Annotated[Path, typer.Argument(help="Where Alertmanager reads the token.")],
) -> None:
    """Write BOTTEGA_TRAINER__TOKEN to PATH for Alertmanager (Docker mode's trainer-token job)."""

    def action() -> None:
        from bottega.auth import write_shared_secret

        settings = _settings()
        if settings.trainer.token is None:
            raise ConfigError("BOTTEGA_TRAINER__TOKEN is not set", hint="`make up` sets it")
        write_shared_secret(path, settings.trainer.token)
        console.print(f"wrote the trainer's token to {path}")

    run_cli(action)
