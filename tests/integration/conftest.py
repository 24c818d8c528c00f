"""Fixtures that start the real services on free ports, and stop them after a failure too."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from bottega.bus import Producer
from bottega.settings import KafkaSettings
from bottega.stack.runner import LocalStack
from bottega.stack.services import build_local_stack
from bottega.stack.settings import StackOptions, StackSettings
from tests.integration.serving_stack import Served, served_stack, serving_settings


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that nothing listens on now."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def make_stack_settings(project_root: Path, home: Path) -> StackSettings:
    """Settings for a private stack: its own state directory and free ports."""
    kafka, controller, mlflow, prometheus, alertmanager, ingest, serving = free_ports(7)
    return StackSettings(  # type: ignore[call-arg]
        _env_file=None,
        project_root=project_root,
        home=home,
        kafka=KafkaSettings(port=kafka, controller_port=controller),
        mlflow={"port": mlflow},
        prometheus={"port": prometheus},
        alertmanager={"port": alertmanager},
        ingest={"port": ingest},
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


def wait_for(condition: Callable[[], object], *, timeout_s: float, what: str) -> object:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def served(
    stack: LocalStack,
    stack_settings: StackSettings,
    project_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """A model server with its own feature store and ingest, over the session's Kafka and MLflow,
    serving a freshly trained champion (see ``serving_stack``)."""
    settings = serving_settings(
        stack_settings, tmp_path_factory.mktemp("serving-home"), free_ports(2)
    )
    yield from served_stack(settings, project_root)
