"""The ``serving`` benchmark: open-loop load on ``/predict``, against two references measured
in the same run on the same data.

One temporary home runs Kafka and MLflow (the project's runner), two days of the baseline
scenario backfilled into its feature store, a logistic regression trained and made champion,
and the model server (``bentoml serve``, its default two workers, prediction log on). Then, for
each offered rate R (``--rates``, default 50, 100, 200, 400 per second) for ``--seconds`` each:

- ``p50_ms_at_R``, ``p99_ms_at_R``, ``error_rate_at_R``: the full predict (features, model,
  logging), latency measured from each request's scheduled send time;
- ``floor_p99_ms_at_200``: a bare Starlette endpoint under uvicorn returning a constant;
- ``peer_p99_ms_at_200``: ``feast serve`` fetching the same card and merchant features;
- ``bentoml_constant_p99_ms_at_200``: the floor's constant endpoint behind ``bentoml serve``,
  with the model server's workers: BentoML's own cost, before any feature or model;
- ratios ``p99_vs_floor_at_200`` (target <= 2.5) and ``p99_vs_peer_at_200`` (target <= 1).

Percentiles are over every request sent: a request that failed or timed out (``--timeout``
5 s) counts as the timeout, so an overloaded server cannot look fast by failing.

The client shares the machine's cores with the servers, as every request does in all three.
"""

from __future__ import annotations

import argparse
import logging
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
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="bottega-bench-") as tmp:
        home = Path(tmp)
        # The whole stack's ports; only Kafka, MLflow and the model server are started.
        settings = whole_stack_settings(home)
        floor_port, peer_port, bento_port = free_ports(settings.bind_host, 3)
        env = {**settings.to_env(), "BOTTEGA_ENV_FILE": str(home / "no.env")}
        stack = build_local_stack(settings)
        try:
            stack.up(["kafka", "mlflow"])
            child = {**_environ(), **env}
            for args in (
                ["-m", "pipelines.backfill", "--days", str(options.days)],
                ["-m", "pipelines.train", "--window", "1d", "--model", "logreg"],
            ):
                done = subprocess.run(
                    [python, *args],
                    env=child,
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
            stack.up(["serving"])
            _wait(f"{settings.serving.url}/readyz", "the model server")
            bodies = _bodies(settings)
            metrics: dict[str, float] = {}
            # Warm up: first requests pay for lazy imports and connection set-up.
            open_loop(f"{settings.serving.url}/predict", bodies, 50, 3)
            for rate in options.rates:
                result = open_loop(f"{settings.serving.url}/predict", bodies, rate, options.seconds)
                _record(result, "serving", rate)
                metrics[f"p50_ms_at_{rate}"] = result.percentile(0.5)
                metrics[f"p99_ms_at_{rate}"] = result.percentile(0.99)
                metrics[f"error_rate_at_{rate}"] = result.error_rate
            stack.down(["serving"])

            uvicorn = [
                python,
                "-m",
                "uvicorn",
                "bench.serving_refs:floor_app",
                "--host",
                settings.bind_host,
                "--port",
                str(floor_port),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
            with _process(
                uvicorn, home, "floor", {**child, "PYTHONPATH": str(settings.project_root)}
            ):
                _wait_port(settings.bind_host, floor_port)
                url = f"http://{settings.bind_host}:{floor_port}/predict"
                open_loop(url, bodies, 50, 3)
                floor = open_loop(url, bodies, REFERENCE_RATE, options.seconds)
                _record(floor, "floor", REFERENCE_RATE)

            # The same constant behind bentoml serve, started as the model server is.
            bento_settings = ServingSettings(
                _env_file=None,
                project_root=settings.project_root,
                home=home / "bentoml-constant",
                bind_host=settings.bind_host,
                serving={"port": bento_port},
            )
            bento = serve_command(bento_settings, service=CONSTANT_SERVICE)
            bento_env = {
                **child,
                "PYTHONPATH": str(settings.project_root),
                **serve_environment(bento_settings, name=CONSTANT_NAME),
            }
            with _process(bento, home, "bentoml-constant", bento_env):
                _wait(f"http://{settings.bind_host}:{bento_port}/readyz", "bentoml serve")
                url = f"http://{settings.bind_host}:{bento_port}/predict"
                open_loop(url, bodies, 50, 3)
                bento_floor = open_loop(url, bodies, REFERENCE_RATE, options.seconds)
                _record(bento_floor, "bentoml-constant", REFERENCE_RATE)

            repo = feast_repo(settings, home / "feast-serve")
            feast = [
                str(Path(python).parent / "feast"),
                "-c",
                str(repo),
                "serve",
                "-h",
                settings.bind_host,
                "-p",
                str(peer_port),
                "--no-access-log",
            ]
            with _process(feast, home, "feast", child):
                _wait(f"http://{settings.bind_host}:{peer_port}/health", "feast serve")
                url = f"http://{settings.bind_host}:{peer_port}/get-online-features"
                peer_bodies = _peer_bodies(bodies)
                open_loop(url, peer_bodies, 50, 3)
                peer = open_loop(url, peer_bodies, REFERENCE_RATE, options.seconds)
                _record(peer, "peer", REFERENCE_RATE)
                if peer.error_rate > 0:
                    log.warning("feast serve failed requests", extra={"errors": peer.errors})
        finally:
            stack.down()
    metrics["floor_p99_ms_at_200"] = floor.percentile(0.99)
    metrics["peer_p99_ms_at_200"] = peer.percentile(0.99)
    metrics["bentoml_constant_p50_ms_at_200"] = bento_floor.percentile(0.5)
    metrics["bentoml_constant_p99_ms_at_200"] = bento_floor.percentile(0.99)
    metrics["bentoml_constant_error_rate_at_200"] = bento_floor.error_rate
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
