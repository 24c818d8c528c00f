"""One replay against the running stack, as ``bottega replay`` and ``bottega demo`` run it."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console

from bottega.bus import Producer
from bottega.replay.display import AlertWatch, Progress
from bottega.replay.player import Player, ReplayOptions, ReplayStats
from bottega.replay.session import plan
from bottega.settings import BottegaSettings


def replay_scenario(
    settings: BottegaSettings,
    scenario: Path,
    options: ReplayOptions,
    *,
    stop: threading.Event,
    console: Console,
    start: datetime | None = None,
    duration: timedelta | None = None,
) -> ReplayStats:
    """Play ``scenario`` from where the feature store's history ends, with a progress display."""
    planned = plan(settings, scenario, start=start, duration=duration)
    console.print(
        f"replaying [bold]{planned.scenario.name}[/] from {planned.start:%Y-%m-%d %H:%M} "
        f"to {planned.end:%Y-%m-%d %H:%M} UTC (simulated), "
        f"{planned.cards_with_history} cards with history"
    )
    stats = ReplayStats(planned.scenario.name, planned.start, planned.end)
    client = (
        httpx.Client(
            base_url=settings.serving.url,
            limits=httpx.Limits(max_connections=options.concurrency),
        )
        if options.predict
        else None
    )
    try:
        with Producer(settings.kafka, client_id="bottega-replay") as producer:
            player = Player(
                planned.simulator.events(), stats, options, publisher=producer, client=client
            )
            with Progress(stats, console, AlertWatch(settings.prometheus.url)):
                player.run(stop)
    finally:
        if client is not None:
            client.close()
    console.print(
        f"{stats.scenario}: {stats.transactions} transactions, {stats.predicted} scored, "
        f"{stats.predict_errors} failed, {stats.labels_sent} labels sent "
        f"({stats.labels_pending} not yet due)"
    )
    return stats
