"""``bottega replay``: play a scenario against the running stack."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from bottega.cli.common import ModeChoice, app, console, err_console, run_cli, setup_logging
from bottega.cli.stack import ModeOption, forward_to_tools_container
from bottega.errors import ConfigError
from bottega.settings import BottegaSettings, load_settings

# A second signal within this many seconds of the first is the same Ctrl-C: in a container, both
# `docker compose run` and the Docker CLI under it pass one Ctrl-C on, so it arrives twice.
SAME_INTERRUPT_S = 1.0


@contextmanager
def interrupt_sets(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) sets ``stop`` for a clean end; a second Ctrl-C aborts."""
    first: list[float] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            if first and time.monotonic() - first[0] < SAME_INTERRUPT_S:
                return
            raise KeyboardInterrupt
        first.append(time.monotonic())
        err_console.print(
            "[yellow]stopping: finishing the requests in flight (Ctrl-C again to abort)[/]"
        )
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(s, on_signal) for s in signals]
    try:
        yield
    finally:
        for s, handler in zip(signals, previous, strict=True):
            signal.signal(s, handler)


@app.command()
def replay(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="A scenario file.")] = Path(
        "scenarios/baseline.yaml"
    ),
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per wall second (600: 10 minutes a second).")
    ] = 600.0,
    rate: Annotated[
        float | None, typer.Option(help="At most this many transactions per wall second.")
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="Play only this much simulated time, e.g. 12h.")
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(help="Simulated start (default: continue after the store's history)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    predict: Annotated[
        bool, typer.Option(help="Score each transaction with the model server.")
    ] = True,
    flush_labels: Annotated[
        bool, typer.Option(help="At the end, also publish the labels not yet due.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="Write the replay's JSON report to this file.")
    ] = None,
    mode: ModeOption = ModeChoice.auto,
) -> None:
    """Play a scenario against the running stack: each transaction is scored by the model
    server and published to Kafka, and each label follows after its delay. Ctrl-C stops it
    cleanly. In Docker mode it runs in the stack's `cli` container."""
    forward_to_tools_container(mode)
    stop = threading.Event()

    def action() -> dict[str, object]:
        from bottega.replay.player import ReplayOptions
        from bottega.replay.run import replay_scenario
        from bottega.usecases.fraud.scenario import parse_duration

        settings = load_settings(BottegaSettings)
        setup_logging(settings)
        try:
            options = ReplayOptions(
                speed=speed,
                rate=rate,
                concurrency=concurrency,
                predict=predict,
                flush_labels=flush_labels,
            )
            span = parse_duration(duration) if duration else None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if start is not None and start.tzinfo is None:
            raise ConfigError("--start needs a timezone, e.g. 2025-03-02T18:00:00+00:00")
        with interrupt_sets(stop):
            stats = replay_scenario(
                settings, scenario, options, stop=stop, console=console, start=start, duration=span
            )
        data = stats.to_dict()
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(data, indent=2))
        return data

    data = run_cli(action)
    if data.get("interrupted"):
        raise typer.Exit(130)
