"""A model server on a real stack, for the serving tests.

The ``served`` fixture gives it a Kafka and an MLflow of its own (no other module's events reach
it); this stack adds its own home (its own feature store), backfilled with two days of the
baseline scenario, a logistic regression trained on them and made champion, and its own ingest
and ``bentoml serve``, each started by the real runner on free ports and stopped after a failure
too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bottega.events import ModelEvent
from bottega.registry import CHAMPION, MODEL_NAMES, MlflowRegistry, publish_model_event
from bottega.stack.runner import LocalStack
from bottega.stack.services import ingest_service, serving_service
from bottega.stack.settings import StackSettings

NAME = MODEL_NAMES["fraud"]


@dataclass(frozen=True)
class Served:
    """A running model server and what it was built from."""

    settings: StackSettings
    env: dict[str, str]
    registry: MlflowRegistry
    runner: LocalStack
    champion: str

    @property
    def url(self) -> str:
        return self.settings.serving.url

    def client(self, timeout_s: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s)

    def train(self, *args: str) -> str:
        """Train and register a version on the whole backfill; return it (it is not promoted).

        The whole two days: the newest day alone holds few labels yet (most arrive days after
        the transaction), and one CI run drew a validation part of 68 rows with no fraud.
        """
        done = run(self.env, "-m", "pipelines.train", "--window", "2d", *args)
        assert done.returncode == 0, done.stderr[-3000:]
        return str(json.loads(done.stdout.strip().splitlines()[-1])["version"])

    def move_alias(self, alias: str, version: str, previous: str | None = None) -> None:
        """What promotion does: move the alias, then publish the event."""
        self.registry.set_alias(NAME, alias, version)
        published = publish_model_event(
            self.settings.kafka,
            ModelEvent(
                model_name=NAME,
                version=version,
                action="promoted",
                alias=alias,
                previous_version=previous,
            ),
        )
        assert published

    def model(self) -> dict[str, Any]:
        with self.client() as client:
            response = client.get("/model")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=900, check=False
    )


def serving_settings(stack_settings: StackSettings, home: Path, ports: list[int]) -> StackSettings:
    ingest, serving = ports
    return StackSettings(  # type: ignore[call-arg]
        _env_file=None,
        project_root=stack_settings.project_root,
        home=home,
        kafka=stack_settings.kafka,
        mlflow=stack_settings.mlflow,
        ingest={"port": ingest},
        serving={"port": serving},
        stack=stack_settings.stack,
    )


def served_stack(settings: StackSettings, project_root: Path) -> Iterator[Served]:
    """Backfill, train, promote, then start the ingest and the server; stop them after."""
    env = {
        **os.environ,
        **settings.to_env(),
        "BOTTEGA_ENV_FILE": str(settings.home / "no.env"),
        "PYTHONPATH": os.pathsep.join([str(project_root / "platform"), str(project_root)]),
    }
    done = run(env, "-m", "pipelines.backfill", "--days", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    registry = MlflowRegistry(settings.mlflow_tracking_uri)
    served_env = {
        "BOTTEGA_SERVE__POLL_INTERVAL_S": "1",
        "BOTTEGA_SERVE__WORKERS": "2",
        "BOTTEGA_LOG_FORMAT": "json",
    }
    # The broker and MLflow are the fixture's: this runner supervises only these two.
    specs = [
        replace(ingest_service(settings), depends_on=()),
        replace(
            serving_service(settings),
            depends_on=(),
            env={**serving_service(settings).env, **served_env},
        ),
    ]
    runner = LocalStack(
        specs, home=settings.home, bind_host=settings.bind_host, cwd=settings.project_root
    )
    probe = Served(settings, env, registry, runner, champion="")
    champion = probe.train("--model", "logreg")
    registry.set_alias(NAME, CHAMPION, champion)
    try:
        runner.up()
        yield replace(probe, champion=champion)
    finally:
        runner.down()
