"""The ``serving`` benchmark: open-loop load on ``/predict``, against two references measured
in the same run on the same data.

One temporary home runs Kafka and MLflow (the project's runner), two days of the baseline
scenario backfilled into its feature store, a logistic regression trained and made champion,
and the model server (``bentoml serve``, its default two workers, prediction log on), beside two
references started the same way and left up throughout:

- the HTTP floor: a bare Starlette endpoint under uvicorn returning a constant;
- the BentoML constant: that endpoint behind ``bentoml serve`` with the model server's workers,
  BentoML's own cost before any feature or model.

Each offered rate R (``--rates``, default 50, 100, 200, 400 per second) is offered to the model
server for ``--seconds`` each: ``p50_ms_at_R``, ``p99_ms_at_R``, ``error_rate_at_R``, the full
predict (features, model, logging), latency measured from each request's scheduled send time.
The reference rate, 200, is offered to the model server, the floor and the BentoML constant in
turn, ``--rounds`` (3) times over, and each reports the median of its rounds (``p99_ms_at_200``,
``floor_p99_ms_at_200``, ``bentoml_constant_p99_ms_at_200``): one 15-second p99 on this shared
machine moves by a third from one run to the next. Then, with the servers stopped:

- ``peer_p99_ms_at_200``: ``feast serve`` fetching the same card and merchant features.

Ratios: ``p99_vs_floor_at_200`` (target <= 2.5) and ``p99_vs_peer_at_200`` (target <= 1).

Percentiles are over every request sent: a request that failed or timed out (``--timeout``
5 s) counts as the timeout, so an overloaded server cannot look fast by failing.

The client shares the machine's cores with the servers, as every request does in all three.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.broker import free_ports, whole_stack_settings
from bench.harness import Benchmark, BenchmarkError, Measurement
from bench.serving_refs import LoadResult, feast_repo, open_loop
from bottega.registry import CHAMPION, MODEL_NAMES, MlflowRegistry
from bottega.stack.health import http_ok
from bottega.stack.process import spawn, terminate
from bottega.stack.services import build_local_stack
from bottega.stack.settings import StackSettings
from services.serving.__main__ import serve_command, serve_environment
from services.serving.settings import ServingSettings

log = logging.getLogger(__name__)

RATES = (50, 100, 200, 400)
# bench/bentoml_constant.py, named here so that this module does not import BentoML.
CONSTANT_SERVICE = "bench.bentoml_constant:ConstantService"
CONSTANT_NAME = "bench_constant"
REFERENCE_RATE = 200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The serving benchmark's options."""
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES))
    parser.add_argument("--seconds", type=float, default=15.0, help="load per rate")
    parser.add_argument("--days", type=float, default=2.0, help="history to backfill")
    parser.add_argument(
        "--rounds", type=int, default=3, help="turns of serving, floor and constant at 200/s"
    )


def _wait(url: str, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not http_ok(url):
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{what} did not become ready at {url}")
        time.sleep(0.5)


@contextmanager
def _process(command: list[str], home: Path, name: str, env: dict[str, str]) -> Iterator[None]:
    record = spawn(command, log_path=home / "logs" / f"{name}.log", env=env, cwd=home)
    try:
        yield
    finally:
        terminate(record, timeout_s=20)


def _bodies(settings: StackSettings, count: int = 500) -> list[dict[str, Any]]:
    from bottega.usecases.fraud.store import FraudFeatureStore

    fs = FraudFeatureStore(settings)
    rows = fs.transactions.query(
        "SELECT * FROM t USING SAMPLE 2000 ROWS ORDER BY event_id LIMIT ?", [count]
    ).to_pylist()
    return [
        {
            "card_id": r["card_id"],
            "merchant_id": r["merchant_id"],
            "amount": float(r["amount"]),
            "merchant_category": r["merchant_category"],
            "country": r["country"],
            "card_country": r["card_country"],
            "channel": r["channel"],
            "device_id": r["device_id"],
        }
        for r in rows
    ]


def _peer_bodies(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from bottega.usecases.fraud.aggregates import CARD_FEATURES
    from bottega.usecases.fraud.features.definitions import CARD_VIEW, MERCHANT_VIEW
    from bottega.usecases.fraud.training import MERCHANT_FEATURE_COLUMNS

    features = [f"{CARD_VIEW}:{n}" for n in CARD_FEATURES] + [
        f"{MERCHANT_VIEW}:{n}" for n in MERCHANT_FEATURE_COLUMNS
    ]
    return [
        {
            "features": features,
            "entities": {"card_id": [b["card_id"]], "merchant_id": [b["merchant_id"]]},
        }
        for b in bodies
    ]


def _record(result: LoadResult, what: str, rate: int) -> None:
    log.info(
        "measured",
        extra={
            "target": what,
            "rate": rate,
            "p50_ms": round(result.percentile(0.5), 2),
            "p99_ms": round(result.percentile(0.99), 2),
            "errors": result.errors,
            "sent": result.sent,
        },
    )


def run(options: argparse.Namespace) -> Measurement:
    """Build the private stack, then measure serving, the floor and the peer."""
    with tempfile.TemporaryDirectory(prefix="bottega-bench-") as tmp:
        home = Path(tmp)
        # The whole stack's ports; only Kafka, MLflow and the model server are started.
        settings = whole_stack_settings(home)
        floor_port, peer_port, bento_port = free_ports(settings.bind_host, 3)
        env = {**settings.to_env(), "BOTTEGA_ENV_FILE": str(home / "no.env")}
        child = {**_environ(), **env}
        stack = build_local_stack(settings)
        try:
            stack.up(["kafka", "mlflow"])
            _bootstrap(settings, child, options.days)
            stack.up(["serving"])
            _wait(f"{settings.serving.url}/readyz", "the model server")
            bodies = _bodies(settings)
            with contextlib.ExitStack() as references:
                urls = {
                    "serving": f"{settings.serving.url}/predict",
                    "floor": references.enter_context(_floor(settings, home, child, floor_port)),
                    "bentoml-constant": references.enter_context(
                        _bentoml_constant(settings, home, child, bento_port)
                    ),
                }
                # Warm up: first requests pay for lazy imports and connection set-up.
                for url in urls.values():
                    open_loop(url, bodies, 50, 3)
                metrics = _serving_rates(urls["serving"], bodies, options)
                rounds = _rounds(urls, bodies, options)
            stack.down(["serving"])
            peer = _peer(settings, home, child, peer_port, bodies, options.seconds)
        finally:
            stack.down()
    for what, results in rounds.items():
        name = {"serving": "", "floor": "floor_", "bentoml-constant": "bentoml_constant_"}[what]
        metrics[f"{name}p50_ms_at_200"] = statistics.median(r.percentile(0.5) for r in results)
        metrics[f"{name}p99_ms_at_200"] = statistics.median(r.percentile(0.99) for r in results)
        metrics[f"{name}error_rate_at_200"] = sum(r.errors for r in results) / sum(
            r.sent for r in results
        )
    metrics["rounds_at_200"] = float(options.rounds)
    metrics["peer_p50_ms_at_200"] = peer.percentile(0.5)
    metrics["peer_p99_ms_at_200"] = peer.percentile(0.99)
    metrics["peer_error_rate_at_200"] = peer.error_rate
    serving_p99 = metrics[f"p99_ms_at_{REFERENCE_RATE}"]
    return Measurement(
        metrics=metrics,
        ratios={
            "p99_vs_floor_at_200": serving_p99 / metrics["floor_p99_ms_at_200"],
            "p99_vs_peer_at_200": serving_p99 / metrics["peer_p99_ms_at_200"],
            # BentoML alone, returning a constant, against the bare floor: the share of the
            # 2.5x budget that the framework itself spends before any feature or model.
            "bentoml_constant_p99_vs_floor_at_200": metrics["bentoml_constant_p99_ms_at_200"]
            / metrics["floor_p99_ms_at_200"],
        },
    )


def _bootstrap(settings: StackSettings, env: dict[str, str], days: float) -> None:
    """Backfill ``days`` of history, train a logistic regression and make it champion."""
    for args in (
        ["-m", "pipelines.backfill", "--days", str(days)],
        ["-m", "pipelines.train", "--window", "1d", "--model", "logreg"],
    ):
        done = subprocess.run(
            [sys.executable, *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=settings.project_root,
        )
        if done.returncode:
            raise BenchmarkError(f"{args[1]} failed: {done.stderr[-2000:]}")
    registry = MlflowRegistry(settings.mlflow_tracking_uri)
    name = MODEL_NAMES["fraud"]
    registry.set_alias(name, CHAMPION, registry.versions(name)[0].version)


def _serving_rates(
    url: str, bodies: list[dict[str, Any]], options: argparse.Namespace
) -> dict[str, float]:
    """The model server at each offered rate but the reference rate (measured in rounds)."""
    metrics: dict[str, float] = {}
    for rate in options.rates:
        if rate == REFERENCE_RATE:
            continue
        result = open_loop(url, bodies, rate, options.seconds)
        _record(result, "serving", rate)
        metrics[f"p50_ms_at_{rate}"] = result.percentile(0.5)
        metrics[f"p99_ms_at_{rate}"] = result.percentile(0.99)
        metrics[f"error_rate_at_{rate}"] = result.error_rate
    return metrics


def _rounds(
    urls: dict[str, str], bodies: list[dict[str, Any]], options: argparse.Namespace
) -> dict[str, list[LoadResult]]:
    """The reference rate on each target in turn, ``--rounds`` times over.

    One 15-second p99 on this shared machine moves by half from one run to the next. Taking
    the targets in turn, with all three up all along, gives each the same machine; the median
    of the rounds is what is reported.
    """
    results: dict[str, list[LoadResult]] = {what: [] for what in urls}
    for _ in range(options.rounds):
        for what, url in urls.items():
            result = open_loop(url, bodies, REFERENCE_RATE, options.seconds)
            _record(result, what, REFERENCE_RATE)
            results[what].append(result)
    return results


@contextmanager
def _floor(settings: StackSettings, home: Path, env: dict[str, str], port: int) -> Iterator[str]:
    """The bare HTTP floor: a constant under uvicorn. Yields its URL."""
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.serving_refs:floor_app",
        "--host",
        settings.bind_host,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with _process(uvicorn, home, "floor", {**env, "PYTHONPATH": str(settings.project_root)}):
        _wait_port(settings.bind_host, port)
        yield f"http://{settings.bind_host}:{port}/predict"


@contextmanager
def _bentoml_constant(
    settings: StackSettings, home: Path, env: dict[str, str], port: int
) -> Iterator[str]:
    """The floor's constant behind ``bentoml serve``, started as the model server is."""
    bento_settings = ServingSettings(
        _env_file=None,
        project_root=settings.project_root,
        home=home / "bentoml-constant",
        bind_host=settings.bind_host,
        serving={"port": port},
    )
    bento = serve_command(bento_settings, service=CONSTANT_SERVICE)
    bento_env = {
        **env,
        "PYTHONPATH": str(settings.project_root),
        **serve_environment(bento_settings, name=CONSTANT_NAME),
    }
    with _process(bento, home, "bentoml-constant", bento_env):
        _wait(f"http://{settings.bind_host}:{port}/readyz", "bentoml serve")
        yield f"http://{settings.bind_host}:{port}/predict"


def _peer(
    settings: StackSettings,
    home: Path,
    env: dict[str, str],
    port: int,
    bodies: list[dict[str, Any]],
    seconds: float,
) -> LoadResult:
    """``feast serve`` fetching the same features, at the reference rate."""
    repo = feast_repo(settings, home / "feast-serve")
    feast = [
        str(Path(sys.executable).parent / "feast"),
        "-c",
        str(repo),
        "serve",
        "-h",
        settings.bind_host,
        "-p",
        str(port),
        "--no-access-log",
    ]
    with _process(feast, home, "feast", env):
        _wait(f"http://{settings.bind_host}:{port}/health", "feast serve")
        url = f"http://{settings.bind_host}:{port}/get-online-features"
        peer_bodies = _peer_bodies(bodies)
        open_loop(url, peer_bodies, 50, 3)
        peer = open_loop(url, peer_bodies, REFERENCE_RATE, seconds)
        _record(peer, "peer", REFERENCE_RATE)
    if peer.error_rate > 0:
        log.warning("feast serve failed requests", extra={"errors": peer.errors})
    return peer


def _wait_port(host: str, port: int, timeout_s: float = 60) -> None:
    from bottega.stack.health import port_open

    deadline = time.monotonic() + timeout_s
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise BenchmarkError(f"nothing listens on {host}:{port}")
        time.sleep(0.2)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


BENCHMARK = Benchmark(
    name="serving",
    summary="open-loop /predict at 50-400 rps against a bare HTTP floor and feast serve",
    add_arguments=add_arguments,
    run=run,
)
