"""``bottega demo``: the closed loop on the running stack, with its timeline and report."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bottega.cli.common import ModeChoice, app, console, run_cli, setup_logging
from bottega.cli.replay import interrupt_sets
from bottega.cli.stack import ModeOption, forward_to_tools_container
from bottega.settings import BottegaSettings, load_settings


@app.command()
def demo(
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second.")] = 600.0,
    duration: Annotated[str, typer.Option(help="Simulated length of each replay.")] = "36h",
    reports: Annotated[
        Path | None, typer.Option(help="Where to write the report (default: <home>/reports).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the whole result as JSON here.")
    ] = None,
    mode: ModeOption = ModeChoice.auto,
) -> None:
    """Bootstrap a champion if needed, replay baseline then fraud-ring, wait for the loop to
    close, and print its timeline; the report lands under .bottega/reports/ (Docker mode: in
    the `cli` container, under the state volume)."""
    forward_to_tools_container(mode)
    stop = threading.Event()

    def action() -> bool:
        from bottega.demo.loop import DemoOptions, run_demo
        from bottega.usecases.fraud.scenario import parse_duration

        settings = load_settings(BottegaSettings)
        setup_logging(settings)
        options = DemoOptions(speed=speed, duration=parse_duration(duration))
        with interrupt_sets(stop):
            result = run_demo(
                settings,
                options,
                stop=stop,
                console=console,
                reports_dir=reports or settings.home / "reports",
            )
        if json_out is not None:
            json_out.write_text(json.dumps(result.to_dict(), indent=2, default=str))
        table = Table(title="the loop")
        for column in ("step", "wall (s)", "simulated", "detail"):
            table.add_column(column)
        zero = result.calm.wall_started
        for m in result.timeline.moments:
            table.add_row(
                m.what,
                f"{m.wall - zero:.0f}",
                f"{m.simulated:%m-%d %H:%M}" if m.simulated else "-",
                m.detail,
            )
        console.print(table)
        console.print(json.dumps(result.figures))
        console.print(f"report: {result.report}")
        console.print(
            "open: "
            f"MLflow {settings.mlflow.url} | Prometheus {settings.prometheus.url}/alerts | "
            f"Alertmanager {settings.alertmanager.url} | reports {settings.monitor.url}/reports | "
            f"runs {settings.trainer.url}/runs | model {settings.serving.url}/model"
        )
        if result.false_alarm_runs:
            console.print("[red]the calm replay triggered a retraining: a false alarm[/]")
        if not result.loop_closed:
            console.print("[red]the loop did not close: no new champion answered[/]")
        return result.loop_closed and not result.false_alarm_runs

    if not run_cli(action):
        raise typer.Exit(1)
