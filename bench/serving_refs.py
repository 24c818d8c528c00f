"""The serving benchmark's references and its open-loop load generator.

- ``floor_app``: a bare Starlette endpoint that returns a constant, served by uvicorn: the cost
  of HTTP alone on this machine;
- ``feast_repo``: a ``feature_store.yaml`` over the same registry and online store, for
  ``feast serve`` (the peer: Feast's own feature server fetching the same features);
- ``open_loop``: requests sent on a fixed schedule whatever the answers, with each latency taken
  from the scheduled send time, so a slow server is not hidden by a client that waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bottega.settings import BottegaSettings

CONSTANT = b'{"score": 0.01, "decision": "approve"}'


async def _constant(_: Request) -> Response:
    return Response(CONSTANT, media_type="application/json")


floor_app = Starlette(routes=[Route("/predict", _constant, methods=["POST"])])


def feast_repo(settings: BottegaSettings, directory: Path) -> Path:
    """A ``feature_store.yaml`` for ``feast serve`` over ``settings``' registry and store."""
    repo = settings.feature_repo_dir
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "project": settings.feast.project,
        "registry": str(repo / "registry.db"),
        "provider": "local",
        "online_store": {"type": "sqlite", "path": str(repo / "online.db")},
        "offline_store": {"type": "duckdb"},
        "entity_key_serialization_version": 3,
    }
    (directory / "feature_store.yaml").write_text(yaml.safe_dump(config))
    return directory


@dataclass(frozen=True)
class LoadResult:
    """Latencies in milliseconds of the requests that succeeded, and how many failed."""

    latencies_ms: list[float]
    errors: int
    sent: int

    timeout_ms: float = 5000.0

    def percentile(self, q: float) -> float:
        """The q-quantile over every request sent; a failed request counts as the timeout.

        Dropping failures would make an overloaded server look fast: a request that never came
        back took at least the timeout.
        """
        ordered = sorted(self.latencies_ms + [self.timeout_ms] * self.errors)
        if not ordered:
            raise ValueError("no requests were sent")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def error_rate(self) -> float:
        return self.errors / self.sent if self.sent else 0.0


async def _open_loop(
    url: str, bodies: Sequence[Any], rate: float, seconds: float, timeout_s: float
) -> LoadResult:
    # aiohttp, not httpx: httpx's connection pool costs the client more CPU per request than the
    # floor server spends answering, and the client shares the machine with the servers.
    import json

    import aiohttp

    latencies: list[float] = []
    errors = 0
    count = int(rate * seconds)
    payloads = [json.dumps(body).encode() for body in bodies]
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            try:
                async with session.post(
                    url, data=payloads[i % len(payloads)], headers=headers
                ) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                return
            if not ok:
                errors += 1
                return
            latencies.append((time.perf_counter() - scheduled) * 1000.0)

        start = time.perf_counter() + 0.05
        tasks = []
        for i in range(count):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
    return LoadResult(latencies, errors, count, timeout_s * 1000.0)


def open_loop(
    url: str,
    bodies: Sequence[Any] | Callable[[], Sequence[Any]],
    rate: float,
    seconds: float,
    timeout_s: float = 5.0,
) -> LoadResult:
    """Offer ``rate`` requests per second to ``url`` for ``seconds``, cycling over ``bodies``."""
    payloads = bodies() if callable(bodies) else bodies
    return asyncio.run(_open_loop(url, payloads, rate, seconds, timeout_s))
