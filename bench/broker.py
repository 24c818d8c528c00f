"""A private, throwaway Kafka broker for benchmarks, started by the project's own runner.

It binds free ports and keeps its state in a temporary directory, so a benchmark neither needs
nor disturbs a stack that ``make up`` started.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bottega.settings import KafkaSettings, load_settings
from bottega.stack.services import build_local_stack
from bottega.stack.settings import StackSettings


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports that nothing listens on now (the kernel picks them)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def whole_stack_settings(home: Path) -> StackSettings:
    """Settings for every service of the local stack on free ports, its state in ``home``."""
    project = load_settings(StackSettings)
    ports = free_ports(project.bind_host, 9)
    return StackSettings(
        project_root=project.project_root,
        home=home,
        bind_host=project.bind_host,
        kafka={"port": ports[0], "controller_port": ports[1]},
        mlflow={"port": ports[2]},
        prometheus={"port": ports[3]},
        alertmanager={"port": ports[4]},
        ingest={"port": ports[5]},
        monitor={"port": ports[6]},
        trainer={"port": ports[7]},
        serving={"port": ports[8]},
        stack=project.stack.model_copy(update={"kafka_libs_dir": project.kafka_libs_dir}),
    )


@contextmanager
def private_broker() -> Iterator[KafkaSettings]:
    """Start a one-node broker on free ports in a temporary home; stop it and delete it after.

    The java executable and the broker's jars come from the project's settings (``make setup``
    puts the jars under ``.bottega/lib/kafka``); everything else is the default, so that a run
    does not depend on the caller's ``BOTTEGA_KAFKA__*`` environment.
    """
    project = load_settings(StackSettings)
    with tempfile.TemporaryDirectory(prefix="bottega-bench-") as home:
        port, controller_port = free_ports(project.bind_host, 2)
        settings = StackSettings(
            project_root=project.project_root,
            home=Path(home),
            bind_host=project.bind_host,
            kafka=KafkaSettings(port=port, controller_port=controller_port),
            stack=project.stack.model_copy(update={"kafka_libs_dir": project.kafka_libs_dir}),
        )
        stack = build_local_stack(settings)
        try:
            stack.up(["kafka"])
            yield settings.kafka
        finally:
            stack.down(["kafka"])


@contextmanager
def private_mlflow() -> Iterator[StackSettings]:
    """Start an MLflow server on a free port in a temporary home; stop it and delete it after.

    The settings it yields point at that server, and their home (feature store included) is the
    same temporary directory.
    """
    project = load_settings(StackSettings)
    with tempfile.TemporaryDirectory(prefix="bottega-bench-") as home:
        (port,) = free_ports(project.bind_host, 1)
        settings = StackSettings(
            project_root=project.project_root,
            home=Path(home),
            bind_host=project.bind_host,
            mlflow={"port": port},
            stack=project.stack,
        )
        stack = build_local_stack(settings)
        try:
            stack.up(["mlflow"])
            yield settings
        finally:
            stack.down(["mlflow"])
