"""The ``soak`` benchmark: a long replay at a steady rate on a private copy of the whole local
stack, watching each service's memory, the errors and the latency over time. Not run in CI.

It starts every service on free ports in a temporary home, bootstraps a champion
(``bottega bootstrap``), then replays ``baseline`` at ``--rate`` transactions a second for
``--minutes`` (default 20). Every ``--sample-s`` seconds it reads each service's resident
memory (RSS, with its child processes: MLflow's and BentoML's workers). At the end:

- ``rss_growth_pct_SERVICE``: growth after the warm-up (``--warmup-minutes``), from a
  least-squares line through the samples: its value at the end against its value at the end of
  the warm-up (target: at most 10); ``rss_slope_mb_per_min_SERVICE`` is the line's slope and
  ``rss_mb_SERVICE`` the last sample;
- ``errors``: requests that got no 200 (target: 0), and ``error_rate``;
- ``p99_ms_minute_N``: the model server's p99 latency of each minute, from its own histogram
  (``bottega_prediction_latency_seconds``, stage ``total``) through the stack's Prometheus;
  ``p99_ms_first_minute_after_warmup``, ``p99_ms_last_minute`` and ``p99_ms_max_minute``, and the
  ratio ``p99_last_vs_first`` (drift over the soak);
- ``minutes``: the minutes actually played.

The samples themselves are written to ``bench/results/series/soak.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console

from bench.broker import whole_stack_settings
from bench.harness import RESULTS_DIR, Benchmark, BenchmarkError, Measurement
from bottega.replay.player import ReplayOptions, ReplayStats
from bottega.replay.run import replay_scenario
from bottega.stack.runner import LocalStack
from bottega.stack.services import build_local_stack
from bottega.stack.settings import StackSettings

log = logging.getLogger(__name__)

P99_QUERY = (
    "1000 * histogram_quantile(0.99, sum by (le) "
    '(rate(bottega_prediction_latency_seconds_bucket{stage="total"}[1m])))'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The soak benchmark's options."""
    parser.add_argument("--minutes", type=float, default=20.0, help="wall minutes of replay")
    parser.add_argument("--rate", type=float, default=40.0, help="transactions per wall second")
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: a quarter")
    parser.add_argument("--sample-s", type=float, default=10.0, help="between RSS samples")
    parser.add_argument("--model", default="mlp", help="the champion: mlp, logreg or rules")


def rss_mb(runner: LocalStack) -> dict[str, float]:
    """Each running service's resident memory, its child processes included, in MB."""
    out: dict[str, float] = {}
    for spec in runner.specs:
        proc = runner.pid_file(spec.name).live()
        if proc is None:
            continue
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        out[spec.name] = total / 1e6
    return out


def line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The least-squares line through ``points`` (x, y): its slope and intercept."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0, mean_y
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var
    return slope, mean_y - slope * mean_x


def growth(samples: list[dict[str, Any]], service: str, warmup_s: float) -> tuple[float, float]:
    """The service's RSS growth after the warm-up, in %, and its slope in MB a minute."""
    points = [
        (s["t"], s["rss_mb"][service])
        for s in samples
        if s["t"] >= warmup_s and service in s["rss_mb"]
    ]
    if len(points) < 2:
        raise BenchmarkError(f"too few samples of {service} after the warm-up")
    slope, intercept = line(points)
    start, end = points[0][0], points[-1][0]
    at_start = slope * start + intercept
    return 100 * slope * (end - start) / at_start, slope * 60


def p99_by_minute(prometheus: str, start: float, end: float) -> list[float]:
    """The model server's p99 latency of each minute from ``start`` to ``end``, in ms."""
    body = httpx.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": P99_QUERY, "start": start + 60, "end": end, "step": "60s"},
        timeout=30,
    ).json()
    result = body["data"]["result"]
    if not result:
        raise BenchmarkError("Prometheus holds no latency histogram of the model server")
    return [float(v) for _, v in result[0]["values"] if not math.isnan(float(v))]


def bootstrap(settings: StackSettings, model: str) -> None:
    """``bottega bootstrap`` against the private stack."""
    env = {
        **os.environ,
        **settings.to_env(),
        "BOTTEGA_ENV_FILE": str(settings.home / "no.env"),
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "bottega.cli", "bootstrap", "--days", "2"]
    command += ["--window", "1d", "--model", model]
    done = subprocess.run(command, env=env, check=False, cwd=settings.project_root)
    if done.returncode != 0:
        raise BenchmarkError(f"bootstrap failed (exit status {done.returncode})")


def soak(
    settings: StackSettings, runner: LocalStack, options: argparse.Namespace
) -> tuple[ReplayStats, list[dict[str, Any]], float]:
    """Replay at the steady rate for the minutes asked, sampling RSS; the replay's statistics,
    the samples and the wall time it started."""
    stop = threading.Event()
    done: list[ReplayStats] = []
    failed: list[BaseException] = []

    def play() -> None:
        try:
            done.append(
                replay_scenario(
                    settings,
                    settings.project_root / "scenarios" / "baseline.yaml",
                    ReplayOptions(speed=None, rate=options.rate, concurrency=8),
                    stop=stop,
                    console=Console(file=io.StringIO(), width=200),
                )
            )
        except BaseException as exc:  # handed to the caller below
            failed.append(exc)

    thread = threading.Thread(target=play, name="soak-replay", daemon=True)
    started = time.time()
    thread.start()
    samples: list[dict[str, Any]] = []
    deadline = started + options.minutes * 60
    try:
        while thread.is_alive() and time.time() < deadline:
            samples.append({"t": round(time.time() - started, 1), "rss_mb": rss_mb(runner)})
            thread.join(timeout=min(options.sample_s, max(0.0, deadline - time.time())))
    finally:
        stop.set()
        thread.join(timeout=120)
    if failed:
        raise failed[0]
    if not done:
        raise BenchmarkError("the replay did not finish")
    samples.append({"t": round(time.time() - started, 1), "rss_mb": rss_mb(runner)})
    return done[0], samples, started


def run(options: argparse.Namespace) -> Measurement:
    """Start the private stack, bootstrap it, soak it, and read the figures."""
    with tempfile.TemporaryDirectory(prefix="bottega-bench-soak-") as tmp:
        home = Path(tmp)
        settings = whole_stack_settings(home)
        runner = build_local_stack(settings)
        try:
            runner.up()
            bootstrap(settings, options.model)
            stats, samples, started = soak(settings, runner, options)
            p99 = p99_by_minute(settings.prometheus.url, started, time.time())
        finally:
            runner.down()
    return measure(stats, samples, p99, options)


def measure(
    stats: ReplayStats,
    samples: list[dict[str, Any]],
    p99: list[float],
    options: argparse.Namespace,
) -> Measurement:
    """The soak's figures from what it recorded."""
    played_s = samples[-1]["t"]
    warmup_s = 60 * (
        options.warmup_minutes if options.warmup_minutes is not None else options.minutes / 4
    )
    metrics: dict[str, float] = {
        "minutes": round(played_s / 60, 2),
        "transactions": float(stats.transactions),
        "rate_per_s": round(stats.transactions / played_s, 1),
        "errors": float(stats.predict_errors),
        "error_rate": stats.predict_errors / max(stats.transactions, 1),
        "warmup_minutes": round(warmup_s / 60, 2),
    }
    services = sorted({name for s in samples for name in s["rss_mb"]})
    for service in services:
        pct, slope = growth(samples, service, warmup_s)
        metrics[f"rss_growth_pct_{service}"] = round(pct, 2)
        metrics[f"rss_slope_mb_per_min_{service}"] = round(slope, 3)
        metrics[f"rss_mb_{service}"] = round(samples[-1]["rss_mb"].get(service, math.nan), 1)
    after = p99[int(warmup_s // 60) :] or p99
    for minute, value in enumerate(p99, start=1):
        metrics[f"p99_ms_minute_{minute}"] = round(value, 2)
    metrics["p99_ms_first_minute_after_warmup"] = round(after[0], 2)
    metrics["p99_ms_last_minute"] = round(p99[-1], 2)
    metrics["p99_ms_max_minute"] = round(max(p99), 2)
    # Beside the records, not among them: RESULTS.md is rendered from results/*.json.
    series = RESULTS_DIR / "series"
    series.mkdir(parents=True, exist_ok=True)
    (series / "soak.json").write_text(
        json.dumps({"samples": samples, "p99_ms_by_minute": p99}, indent=1) + "\n"
    )
    log.info("soak measured", extra={"metrics": metrics})
    return Measurement(metrics=metrics, ratios={"p99_last_vs_first": p99[-1] / after[0]})


BENCHMARK = Benchmark(
    name="soak",
    summary="a steady replay for 20 minutes: RSS growth per service, errors, p99 per minute",
    add_arguments=add_arguments,
    run=run,
)
