"""The replay's progress display: the phase, the simulated clock, the rate, the latest score and
the latest alert, refreshed a few times a second.

Alerts are read from Prometheus' own API (``/api/v1/alerts``) on a slow cadence, so the display
shows what the platform has noticed, not what the replay knows it did.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

from bottega.replay.player import ReplayStats

log = logging.getLogger(__name__)


@dataclass
class AlertWatch:
    """The newest firing alert in Prometheus, polled in the background."""

    prometheus_url: str
    every_s: float = 2.0
    latest: str = "-"

    def poll(self) -> None:
        """Read the firing alerts once; keep the last answer when Prometheus is unreachable."""
        try:
            response = httpx.get(f"{self.prometheus_url}/api/v1/alerts", timeout=2.0)
            alerts = response.json()["data"]["alerts"]
        except (httpx.HTTPError, ValueError, KeyError):
            return
        firing = sorted(
            (a for a in alerts if a.get("state") == "firing"),
            key=lambda a: str(a.get("activeAt", "")),
        )
        pending = [a for a in alerts if a.get("state") == "pending"]
        if firing:
            newest = firing[-1]
            self.latest = f"[red]{newest['labels'].get('alertname', '?')}[/] firing"
            if len(firing) > 1:
                self.latest += f" (+{len(firing) - 1} more)"
        elif pending:
            self.latest = f"[yellow]{pending[0]['labels'].get('alertname', '?')}[/] pending"
        else:
            self.latest = "none firing"

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set."""
        while not stop.is_set():
            self.poll()
            stop.wait(self.every_s)


def render(stats: ReplayStats, alert: str) -> RenderableType:
    """The progress table."""
    table = Table(title=f"replay: {stats.scenario}", show_header=False, min_width=60)
    table.add_column("what", style="dim")
    table.add_column("value")
    sim_now = stats.sim_now.strftime("%Y-%m-%d %H:%M:%S") if stats.sim_now else "-"
    total = (stats.sim_end - stats.sim_start).total_seconds()
    done = (stats.sim_now - stats.sim_start).total_seconds() if stats.sim_now else 0.0
    share = f"{100 * done / total:.0f}%" if total > 0 else "-"
    table.add_row("phase", stats.phase or "-")
    table.add_row("simulated clock", f"{sim_now} UTC ({share} of the scenario)")
    table.add_row("wall clock", f"{time.time() - stats.wall_started:.0f} s")
    behind = f", [yellow]{stats.behind_s:.1f} s behind[/]" if stats.behind_s > 1 else ""
    table.add_row("rate", f"{stats.rate():.0f} transactions/s{behind}")
    table.add_row(
        "sent",
        f"{stats.transactions} transactions ({stats.frauds} frauds), {stats.labels_sent} labels",
    )
    errors = f", [red]{stats.predict_errors} failed[/]" if stats.predict_errors else ""
    p50, p99 = stats.percentile_ms(0.5), stats.percentile_ms(0.99)
    latency = f" (p50 {p50:.1f} ms, p99 {p99:.1f} ms)" if p50 is not None and p99 else ""
    table.add_row("predictions", f"{stats.predicted}{errors}{latency}")
    if stats.last_score is not None:
        table.add_row(
            "latest score",
            f"{stats.last_score:.4f} ({stats.last_decision}) by v{stats.last_version}",
        )
    table.add_row("latest alert", alert)
    return table


class Progress:
    """A live table on a terminal; a log line every few seconds anywhere else."""

    def __init__(self, stats: ReplayStats, console: Console, alerts: AlertWatch | None) -> None:
        self.stats = stats
        self.console = console
        self.alerts = alerts
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Progress:
        if self.alerts is not None:
            self._start(self.alerts.run)
        self._start(self._live if self.console.is_terminal else self._log)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if not self.console.is_terminal:
            return
        self.console.print(render(self.stats, self._alert()))

    def _start(self, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self._stop,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _alert(self) -> str:
        return self.alerts.latest if self.alerts is not None else "-"

    def _live(self, stop: threading.Event) -> None:
        with Live(console=self.console, refresh_per_second=4, transient=True) as live:
            while not stop.wait(0.25):
                live.update(render(self.stats, self._alert()))

    def _log(self, stop: threading.Event) -> None:
        while not stop.wait(10.0):
            s = self.stats
            log.info(
                "replay progress",
                extra={
                    "phase": s.phase,
                    "simulated": s.sim_now.isoformat() if s.sim_now else None,
                    "transactions": s.transactions,
                    "predicted": s.predicted,
                    "errors": s.predict_errors,
                    "labels": s.labels_sent,
                    "rate": round(s.rate(), 1),
                    "alert": self._alert(),
                },
            )
