"""``bottega simulate|backfill|features``: the data commands of the fraud use case."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bottega.cli.common import app, console, run_cli, setup_logging
from bottega.errors import ConfigError
from bottega.settings import BottegaSettings, load_settings
from bottega.stack.process import child_environment

features_app = typer.Typer(help="Manage the feature store.", no_args_is_help=True)
app.add_typer(features_app, name="features")

ScenarioOption = Annotated[
    Path, typer.Option("--scenario", "-s", help="A scenario file in scenarios/.")
]


def _duration(text: str) -> timedelta:
    from bottega.usecases.fraud.scenario import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        raise ConfigError(f"not a duration: {text!r}", hint="write e.g. 30m, 6h or 2d") from None


@app.command()
def simulate(
    scenario: ScenarioOption = Path("scenarios/baseline.yaml"),
    window: Annotated[str, typer.Option(help="Report window, e.g. 6h.")] = "6h",
    duration: Annotated[
        str | None, typer.Option(help="Simulate this long (default: the whole scenario).")
    ] = None,
) -> None:
    """Check a scenario: simulate it offline and report, window by window, its fraud rate and
    the oracle's PR-AUC, the ceiling for any model."""

    def action() -> None:
        from bottega.usecases.fraud.oracle import oracle_report
        from bottega.usecases.fraud.scenario import load_scenario
        from bottega.usecases.fraud.simulator import Simulator

        setup_logging(load_settings(BottegaSettings))
        loaded = load_scenario(scenario)
        until = loaded.start + _duration(duration) if duration else None
        report = oracle_report(Simulator(loaded, until=until).events(), window=_duration(window))
        data = report.to_dict()
        table = Table(title=f"{loaded.name}: the oracle (Bayes-optimal) score, by window")
        columns = ("start", "phase", "n", "frauds", "fraud_rate", "oracle_pr_auc")
        for column in columns:
            table.add_column(column, justify="left" if column in ("start", "phase") else "right")
        for row in data["windows"]:
            table.add_row(*(_fmt(row.get(c)) for c in columns))
        console.print(table)
        overall = data.get("overall", {})
        console.print("overall: " + ", ".join(f"{k}={_fmt(v)}" for k, v in overall.items()))

    run_cli(action)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return "-" if value is None else str(value)


@app.command()
def backfill(
    scenario: ScenarioOption = Path("scenarios/baseline.yaml"),
    days: Annotated[float, typer.Option(help="Days of history to generate.")] = 14.0,
    allow_existing: Annotated[bool, typer.Option(help="Add to a non-empty store.")] = False,
) -> None:
    """Generate history into the feature store, without Kafka (runs pipelines/backfill)."""
    command = [
        sys.executable,
        "-m",
        "pipelines.backfill",
        "--scenario",
        str(scenario),
        "--days",
        str(days),
    ]
    if allow_existing:
        command.append("--allow-existing")
    done = subprocess.run(command, env=child_environment(), check=False)
    if done.returncode == 0:
        run_cli(reload_running_ingest)
    raise typer.Exit(done.returncode)


def reload_running_ingest() -> None:
    """A running ingest holds card state from before the backfill: restart it so it rebuilds
    that state from the store, which now holds the backfilled history."""
    from bottega.stack.services import build_local_stack
    from bottega.stack.settings import StackSettings

    stack = build_local_stack(load_settings(StackSettings))
    if stack.pid_file("ingest").live() is None:
        return
    console.print("restarting the ingest, so that it rebuilds its state from the backfill")
    stack.down(["ingest"])
    stack.up(["ingest"])


@features_app.command("apply")
def features_apply() -> None:
    """Register the feature definitions and create the offline tables (idempotent)."""

    def action() -> None:
        from bottega.usecases.fraud.store import FraudFeatureStore

        settings = load_settings(BottegaSettings)
        setup_logging(settings)
        FraudFeatureStore(settings).apply()
        console.print(f"applied the fraud feature repo in {settings.feature_repo_dir}")

    run_cli(action)


@features_app.command("merchants")
def features_merchants(
    days: Annotated[int, typer.Option(help="Recompute this many past daily snapshots.")] = 2,
) -> None:
    """Recompute the daily merchant snapshots from labelled history and materialize them."""

    def action() -> None:
        from bottega.usecases.fraud.merchants import refresh_merchant_features
        from bottega.usecases.fraud.store import FraudFeatureStore

        settings = load_settings(BottegaSettings)
        setup_logging(settings)
        today = datetime.now(UTC).date()
        rows = refresh_merchant_features(
            FraudFeatureStore(settings), today - timedelta(days=days - 1), today
        )
        console.print(f"wrote {rows} merchant snapshots")

    run_cli(action)
