"""Fixtures that start the real services on free ports, and stop them after a failure too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bottega.bus import Producer
from bottega.settings import BottegaSettings, KafkaSettings
from bottega.stack.health import http_ok
from bottega.stack.runner import LocalStack
from bottega.stack.services import build_local_stack
from bottega.stack.settings import StackOptions, StackSettings
from tests.integration.serving_stack import Served, served_stack, serving_settings
from tests.waiting import wait_for

__all__ = ["free_ports", "make_stack_settings", "wait_for"]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that nothing listens on now."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def make_stack_settings(project_root: Path, home: Path) -> StackSettings:
    """Settings for a private stack: its own state directory and free ports."""
    kafka, controller, mlflow, prometheus, alertmanager, ingest, monitor, trainer, serving = (
        free_ports(9)
    )
    return StackSettings(  # type: ignore[call-arg]
        _env_file=None,
        project_root=project_root,
        home=home,
        kafka=KafkaSettings(port=kafka, controller_port=controller),
        mlflow={"port": mlflow},
        prometheus={"port": prometheus},
        alertmanager={"port": alertmanager},
        ingest={"port": ingest},
        monitor={"port": monitor},
        trainer={"port": trainer},
        serving={"port": serving},
        stack=StackOptions(
            kafka_libs_dir=project_root / ".bottega" / "lib" / "kafka", startup_timeout_s=180
        ),
    )


@pytest.fixture(scope="session")
def stack_settings(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> StackSettings:
    return make_stack_settings(project_root, tmp_path_factory.mktemp("bottega-home"))


@pytest.fixture(scope="session")
def stack(stack_settings: StackSettings) -> Iterator[LocalStack]:
    """Kafka, MLflow, Alertmanager and Prometheus, started by the real runner."""
    runner = build_local_stack(stack_settings)
    try:
        runner.up()
        yield runner
    finally:
        runner.down()


@pytest.fixture()
def kafka(stack: LocalStack, stack_settings: StackSettings) -> KafkaSettings:
    return stack_settings.kafka


@pytest.fixture()
def dead_letters(kafka: KafkaSettings) -> Iterator[Producer]:
    """A dead-letter producer for a test's consumers, closed after the test."""
    producer = Producer(kafka, client_id="test-dlq")
    try:
        yield producer
    finally:
        producer.close(timeout=10)


@pytest.fixture()
def unique() -> Callable[[str], str]:
    """Names that no other test uses: topics and groups stay independent."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Bootstrapped:
    """A state directory whose feature store holds history and whose MLflow has a champion."""

    home: Path
    settings: BottegaSettings
    env: dict[str, str]


def service_env(settings: BottegaSettings, project_root: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process that reads ``settings`` back, and nothing else."""
    return {
        **os.environ,
        **settings.to_env(),
        "BOTTEGA_ENV_FILE": str(settings.home / "no.env"),
        "PYTHONPATH": os.pathsep.join([str(project_root / "platform"), str(project_root)]),
        "COLUMNS": "200",
        **extra,
    }


@pytest.fixture(scope="session")
def bootstrapped(
    stack: LocalStack,
    stack_settings: StackSettings,
    project_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Bootstrapped:
    """``bottega bootstrap --days 3 --window 2d`` into a fresh state directory."""
    home = tmp_path_factory.mktemp("bootstrapped-home")
    settings = BottegaSettings(  # type: ignore[call-arg]
        _env_file=None,
        project_root=project_root,
        home=home,
        kafka=stack_settings.kafka,
        mlflow=stack_settings.mlflow,
    )
    env = service_env(settings, project_root)
    done = subprocess.run(
        [sys.executable, "-c", "from bottega.cli import main; main()", "bootstrap"]
        + ["--days", "3", "--window", "2d"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Bootstrapped(home, settings, env)


@contextmanager
def service_process(
    module: str, env: dict[str, str], url: str, log_path: Path, *, timeout_s: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m module`` until the block ends (after a failure too), ready on ``url``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{module} exited: {log_path.read_text()[-3000:]}")
            return http_ok(f"{url}/readyz")

        wait_for(ready, timeout_s=timeout_s, what=f"{module} to be ready")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def private_services(project_root: Path, home: Path, names: list[str]) -> Iterator[StackSettings]:
    """Services of their own (``kafka``, ``mlflow``), on free ports, stopped after the block
    (after a failure too)."""
    settings = make_stack_settings(project_root, home)
    runner = build_local_stack(settings)
    try:
        runner.up(names)
        yield settings
    finally:
        runner.down(names)


@contextmanager
def private_mlflow(project_root: Path, home: Path) -> Iterator[StackSettings]:
    """An MLflow server of its own.

    ``fraud-detector`` is one registered model per server: tests that reason about "the first
    champion" or "the champion" need a registry no other test module writes to.
    """
    with private_services(project_root, home, ["mlflow"]) as settings:
        yield settings


@pytest.fixture(scope="session")
def served(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A model server with its own broker, MLflow, feature store and ingest, serving a freshly
    trained champion (see ``serving_stack``).

    Nothing is shared with the session's stack: the other modules publish to that broker
    transactions from other years and malformed events on purpose, and a server that scored or
    trained on them, or a reader of its prediction log, would see them too.
    """
    with private_services(
        project_root, tmp_path_factory.mktemp("serving-infra"), ["kafka", "mlflow"]
    ) as own:
        settings = serving_settings(own, tmp_path_factory.mktemp("serving-home"), free_ports(2))
        yield from served_stack(settings, project_root)
