"""One replay against the running stack, as ``bottega replay`` and ``bottega demo`` run it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console

from bottega.bus import Producer
from bottega.errors import BottegaError
from bottega.replay.display import AlertWatch, Progress
from bottega.replay.player import Player, ReplayOptions, ReplayStats
from bottega.replay.session import plan
from bottega.settings import BottegaSettings
from bottega.usecases.fraud.scenario import load_scenario


class ReplayError(BottegaError):
    """The stack cannot take a replay."""


def check_serving(settings: BottegaSettings) -> None:
    """The model server answers and holds a champion; else one line that says what to do."""
    url = f"{settings.serving.url}/readyz"
    try:
        ready = httpx.get(url, timeout=5.0).status_code == 200
    except httpx.HTTPError:
        ready = False
    if not ready:
        raise ReplayError(
            f"the model server is not ready at {url}",
            hint="start the stack (make up) and give it a champion (bottega bootstrap)",
        )


def _producer(settings: BottegaSettings) -> Producer:
    try:
        return Producer(settings.kafka, client_id="bottega-replay", bootstrap_timeout_ms=10_000)
    except Exception as exc:  # noqa: BLE001  (kafka-python raises many unrelated types)
        raise ReplayError(
            f"Kafka is unreachable at {settings.kafka.bootstrap_servers}: {exc!r}",
            hint="start the stack: make up",
        ) from None


def lower_priority(nice: int) -> None:
    """Run this process at niceness ``nice`` or lower priority (never raises it back)."""
    current = os.nice(0)
    if nice > current:
        os.nice(nice - current)


def replay_scenario(
    settings: BottegaSettings,
    scenario: Path,
    options: ReplayOptions,
    *,
    stop: threading.Event,
    console: Console,
    start: datetime | None = None,
    duration: timedelta | None = None,
    observe: Callable[[ReplayStats], None] | None = None,
) -> ReplayStats:
    """Play ``scenario`` from where the feature store's history ends, with a progress display.

    ``observe`` receives the live statistics before the first event is played (a caller that
    watches the replay from another thread, as the end-to-end tests do).
    """
    # The file first: a mistake in it is the user's to fix whatever state the stack is in.
    loaded = load_scenario(scenario)
    if options.predict:
        check_serving(settings)
    lower_priority(options.nice)
    planned = plan(settings, loaded, start=start, duration=duration)
    console.print(
        f"replaying [bold]{planned.scenario.name}[/] from {planned.start:%Y-%m-%d %H:%M} "
        f"to {planned.end:%Y-%m-%d %H:%M} UTC (simulated), "
        f"{planned.cards_with_history} cards with history"
        + (f", after a lead-in of {planned.lead_in} (unscored)" if planned.lead_in else "")
    )
    stats = ReplayStats(planned.scenario.name, planned.start, planned.end)
    if observe is not None:
        observe(stats)
    client = (
        httpx.Client(
            base_url=settings.serving.url,
            limits=httpx.Limits(max_connections=options.concurrency),
        )
        if options.predict
        else None
    )
    try:
        with _producer(settings) as producer:
            player = Player(
                planned.simulator.events(),
                stats,
                options,
                publisher=producer,
                client=client,
                lead_in_until=planned.start if planned.lead_in else None,
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
