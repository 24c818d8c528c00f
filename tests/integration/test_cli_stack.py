"""`bottega up|status|down` as a user runs them, against a private full stack."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .conftest import free_ports

SERVICES = (
    "kafka",
    "mlflow",
    "alertmanager",
    "prometheus",
    "ingest",
    "monitor",
    "trainer",
    "serving",
)


@pytest.fixture()
def cli_env(project_root: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    kafka, controller, mlflow, prometheus, alertmanager, ingest, monitor, trainer, serving = (
        free_ports(9)
    )
    env = {
        **os.environ,
        "MODE": "local",
        "BOTTEGA_ENV_FILE": str(tmp_path / "no.env"),
        "BOTTEGA_HOME": str(tmp_path / "home"),
        "BOTTEGA_KAFKA__PORT": str(kafka),
        "BOTTEGA_KAFKA__CONTROLLER_PORT": str(controller),
        "BOTTEGA_MLFLOW__PORT": str(mlflow),
        "BOTTEGA_PROMETHEUS__PORT": str(prometheus),
        "BOTTEGA_ALERTMANAGER__PORT": str(alertmanager),
        "BOTTEGA_INGEST__PORT": str(ingest),
        "BOTTEGA_MONITOR__PORT": str(monitor),
        "BOTTEGA_TRAINER__PORT": str(trainer),
        "BOTTEGA_SERVING__PORT": str(serving),
        "BOTTEGA_STACK__KAFKA_LIBS_DIR": str(project_root / ".bottega" / "lib" / "kafka"),
        "COLUMNS": "200",
    }
    yield env
    # Whatever happened above, leave no process behind.
    bottega(env, "down")


def bottega(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "bottega")
    return subprocess.run(
        [exe, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def pid_records(home: Path) -> dict[str, dict[str, object]]:
    return {p.stem: json.loads(p.read_text()) for p in (home / "run").glob("*.pid")}


def test_up_status_up_down(cli_env: dict[str, str]) -> None:
    home = Path(cli_env["BOTTEGA_HOME"])
    started = bottega(cli_env, "up")
    assert started.returncode == 0, started.stderr + started.stdout
    assert (
        "started kafka, mlflow, alertmanager, prometheus, ingest, monitor, trainer, serving"
        in started.stdout
    )
    records = pid_records(home)
    assert set(records) == set(SERVICES)
    family = []
    for record in records.values():
        proc = psutil.Process(int(record["pid"]))  # type: ignore[call-overload]
        family += [proc, *proc.children(recursive=True)]
    assert all(p.is_running() for p in family)
    for name in SERVICES:
        assert (home / "logs" / f"{name}.log").exists()

    again = bottega(cli_env, "up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    assert pid_records(home) == records

    status = bottega(cli_env, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [line for line in status.stdout.splitlines() if any(s in line for s in SERVICES)]
    assert len(rows) == len(SERVICES) and all("healthy" in row for row in rows)
    assert f"http://127.0.0.1:{cli_env['BOTTEGA_MLFLOW__PORT']}" in status.stdout
    assert str(records["kafka"]["pid"]) in status.stdout
    # A fresh stack has no champion: the model server is up and says what it waits for.
    assert "waiting for a champion" in next(row for row in rows if "serving" in row)

    stopped = bottega(cli_env, "down")
    assert stopped.returncode == 0, stopped.stderr
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, f"left running: {alive}"
    assert pid_records(home) == {}

    after = bottega(cli_env, "status")
    assert after.returncode == 1
    assert after.stdout.count("stopped") == len(SERVICES)


def test_a_taken_port_fails_cleanly_and_leaves_nothing(cli_env: dict[str, str]) -> None:
    port = int(cli_env["BOTTEGA_PROMETHEUS__PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        done = bottega(cli_env, "up")
    assert done.returncode == 1
    assert f"port {port}" in done.stderr and "prometheus" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert pid_records(Path(cli_env["BOTTEGA_HOME"])) == {}


def test_docker_mode_without_docker_says_so_and_starts_nothing(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "MODE": "docker", "BOTTEGA_STACK__DOCKER": "docker-not-installed"}
    done = bottega(env, "up")
    assert done.returncode == 1
    assert "docker-not-installed is missing" in done.stderr
    assert "MODE=local" in done.stderr and "Traceback" not in done.stderr
    assert pid_records(Path(cli_env["BOTTEGA_HOME"])) == {}
    # Nothing was generated either: the secrets come only once Docker answers.
    assert not (Path(cli_env["BOTTEGA_HOME"]) / "secrets").exists()


def test_a_missing_prerequisite_gets_one_line_on_how_to_install_it(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **cli_env,
        "BOTTEGA_STACK__KAFKA_LIBS_DIR": str(tmp_path / "no-jars"),
        "BOTTEGA_STACK__PROMETHEUS_BIN": "prometheus-not-installed",
    }
    done = bottega(env, "up")
    assert done.returncode == 1
    assert "is missing" in done.stderr and "make setup" in done.stderr
    assert "Traceback" not in done.stderr
    doctor = bottega(env, "doctor")
    assert doctor.returncode == 1
    assert "apt-get install -y prometheus" in doctor.stdout


def test_a_bad_setting_names_the_field_without_a_traceback(cli_env: dict[str, str]) -> None:
    done = bottega({**cli_env, "BOTTEGA_KAFKA__PROT": "1"}, "status")
    assert done.returncode == 1
    assert "kafka.prot" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_service_is_named(cli_env: dict[str, str]) -> None:
    done = bottega(cli_env, "down", "nosuch")
    assert done.returncode == 1
    assert "unknown service 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr


def test_logs_of_one_service_show_only_its_own(cli_env: dict[str, str]) -> None:
    logs = Path(cli_env["BOTTEGA_HOME"]) / "logs"
    logs.mkdir(parents=True)
    (logs / "ingest.log").write_text("an ingest line\n")
    (logs / "kafka.log").write_text("a kafka line\n")
    one = bottega(cli_env, "logs", "ingest")
    assert one.returncode == 0, one.stderr
    assert "an ingest line" in one.stdout and "a kafka line" not in one.stdout
    every = bottega(cli_env, "logs")
    assert "an ingest line" in every.stdout and "a kafka line" in every.stdout
