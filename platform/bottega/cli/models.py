"""``bottega train|promote|rollback|models|bootstrap``: the model lifecycle commands.

Training and promotion are batch jobs in ``pipelines/``; the platform never imports them, so
these commands run them as ``python -m pipelines.X`` child processes, as ``bottega backfill``
does. ``models`` and ``rollback`` only touch the registry and run in the CLI's own process.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bottega.cli.common import app, console, run_cli, setup_logging
from bottega.cli.data import reload_running_ingest
from bottega.settings import BottegaSettings, load_settings
from bottega.stack.process import child_environment

SHOWN_METRICS = (
    "holdout_pr_auc",
    "holdout_pr_auc_vs_oracle",
    "holdout_roc_auc",
    "holdout_log_loss",
)


def _run_job(module: str, *args: str) -> int:
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, env=child_environment(), check=False).returncode


def _train_args(model: str | None, window: str | None) -> list[str]:
    args: list[str] = []
    if model:
        args += ["--model", model]
    if window:
        args += ["--window", window]
    return args


@app.command()
def train(
    model: Annotated[
        str | None, typer.Option(help="mlp, logreg or rules (default: the config's, mlp).")
    ] = None,
    window: Annotated[str | None, typer.Option(help="Training window, e.g. 7d.")] = None,
    config: Annotated[Path | None, typer.Option(help="A YAML training config.")] = None,
) -> None:
    """Train a fraud model, log it to MLflow and register it as the challenger
    (runs pipelines/train)."""
    args = _train_args(model, window)
    if config is not None:
        args += ["--config", str(config)]
    raise typer.Exit(_run_job("pipelines.train", *args))


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Option(help="The version to judge (default: the challenger).")
    ] = None,
) -> None:
    """Judge a challenger against the champion on its newest holdout; promote it if it wins
    (runs pipelines/promote)."""
    raise typer.Exit(_run_job("pipelines.promote", *(["--version", version] if version else [])))


@app.command()
def rollback() -> None:
    """Move the champion alias back to the version it replaced."""

    def action() -> None:
        from bottega.events import ModelEvent
        from bottega.registry import (
            CHAMPION,
            MODEL_NAMES,
            MlflowRegistry,
            publish_model_event,
            rollback,
        )

        settings = load_settings(BottegaSettings)
        setup_logging(settings)
        name = MODEL_NAMES["fraud"]
        demoted, restored = rollback(MlflowRegistry(settings.mlflow_tracking_uri), name)
        event = ModelEvent(
            model_name=name,
            version=restored.version,
            action="rolled_back",
            alias=CHAMPION,
            previous_version=demoted.version,
            reason="rolled back by a user",
        )
        published = publish_model_event(settings.kafka, event)
        console.print(
            f"{name}: champion moved back from v{demoted.version} to v{restored.version}"
            + ("" if published else " [yellow](model event not published: Kafka unreachable)[/]")
        )

    run_cli(action)


@app.command()
def models() -> None:
    """List the registered fraud model versions, their aliases, decisions and metrics."""

    def action() -> None:
        from bottega.registry import MODEL_NAMES, TAG_DECISION, TAG_MODEL_KIND, MlflowRegistry

        settings = load_settings(BottegaSettings)
        setup_logging(settings)
        name = MODEL_NAMES["fraud"]
        versions = MlflowRegistry(settings.mlflow_tracking_uri).versions(name)
        if not versions:
            console.print(f"{name} has no registered version yet: run bottega train")
            return
        table = Table(title=name)
        for column in ("version", "aliases", "model", "created", "decision"):
            table.add_column(column)
        for metric in SHOWN_METRICS:
            table.add_column(metric.removeprefix("holdout_"), justify="right")
        for v in versions:
            created = datetime.fromtimestamp(v.created_ms / 1000, UTC).strftime("%m-%d %H:%M")
            table.add_row(
                v.version,
                ", ".join(v.aliases) or "-",
                v.tags.get(TAG_MODEL_KIND, "-"),
                created,
                v.tags.get(TAG_DECISION, "-"),
                *(f"{v.metrics[m]:.4f}" if m in v.metrics else "-" for m in SHOWN_METRICS),
            )
        console.print(table)

    run_cli(action)


@app.command()
def bootstrap(
    scenario: Annotated[Path, typer.Option(help="Scenario for the history.")] = Path(
        "scenarios/baseline.yaml"
    ),
    days: Annotated[float, typer.Option(help="Days of history, when the store is empty.")] = 8.0,
    model: Annotated[str | None, typer.Option(help="mlp, logreg or rules.")] = None,
    window: Annotated[str | None, typer.Option(help="Training window, e.g. 7d.")] = None,
    if_missing: Annotated[
        bool, typer.Option(help="Do nothing when the registry already has a champion.")
    ] = False,
) -> None:
    """Give a fresh stack a champion: backfill (when the store is empty), train, promote."""
    if if_missing:
        version = run_cli(_champion_version)
        if version is not None:
            console.print(f"the registry already has a champion (v{version}): nothing to do")
            return
    if run_cli(_store_is_empty):
        console.print(f"backfilling {days:g} days of {scenario}")
        code = _run_job("pipelines.backfill", "--scenario", str(scenario), "--days", str(days))
        if code:
            raise typer.Exit(code)
        # A running ingest recovered its card state from the empty store: without a restart it
        # would serve 24-hour and 7-day aggregates that ignore the whole backfilled history.
        run_cli(reload_running_ingest)
    else:
        console.print("the feature store already holds history: no backfill")
    console.print("training")
    code = _run_job("pipelines.train", *_train_args(model, window))
    if code:
        raise typer.Exit(code)
    console.print("promoting")
    raise typer.Exit(_run_job("pipelines.promote"))


def _champion_version() -> str | None:
    from bottega.registry import CHAMPION, MODEL_NAMES, MlflowRegistry

    settings = load_settings(BottegaSettings)
    champion = MlflowRegistry(settings.mlflow_tracking_uri).by_alias(MODEL_NAMES["fraud"], CHAMPION)
    return champion.version if champion is not None else None


def _store_is_empty() -> bool:
    from bottega.usecases.fraud.store import FraudFeatureStore

    settings = load_settings(BottegaSettings)
    fs = FraudFeatureStore(settings)
    fs.apply()
    count = fs.transactions.query("SELECT count(*) AS n FROM t")["n"][0].as_py()
    return not count
