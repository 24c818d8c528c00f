"""One private stack for the fault tests: every service on free ports, its own home, a champion.

The tests in this folder share it, one fault each, in file order. Each plays a short replay of
its own (after the previous one in simulated time), injects its fault while the replay runs,
and counts event_ids end to end. The figures each test sees are written to
``<home>/fault-figures.json`` and printed at the end of the run.

Services are killed with SIGKILL to their whole process group, as an out-of-memory kill or a
container's kill would take them, and brought back by the stack runner, as ``bottega up`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bottega.stack.runner import LocalStack
from bottega.stack.services import build_local_stack
from bottega.stack.settings import StackSettings
from tests.faults.harness import FaultStack, Figures
from tests.integration.conftest import make_stack_settings

# Every service but Prometheus and Alertmanager: the short windows below would make them fire
# retrain alerts of their own, and the tests deliver the one alert they need themselves.
SERVICES = ("kafka", "mlflow", "ingest", "monitor", "trainer", "serving")

# Options of the stack's own processes, read from the environment they inherit. Short monitor
# windows, so that a replay of a few simulated hours closes many; a trainer that trains the
# logistic regression, retries within seconds and has no cooldown, so a test can watch a run
# fail, retry and succeed.
SERVICE_OPTIONS = {
    "BOTTEGA_MONITORING__WINDOW": "20m",
    "BOTTEGA_MONITORING__STEP": "10m",
    "BOTTEGA_MONITORING__LABEL_WAIT": "0s",
    "BOTTEGA_MONITORING__LATENESS": "5m",
    "BOTTEGA_MONITORING__MIN_ROWS": "50",
    "BOTTEGA_MONITORING__MAX_PENDING_WINDOWS": "50",
    "BOTTEGA_MONITORING__REFERENCE_POLL_S": "5",
    "BOTTEGA_RETRAIN__MODEL": "logreg",
    "BOTTEGA_RETRAIN__WINDOW": "1d",
    "BOTTEGA_RETRAIN__COOLDOWN_S": "0",
    "BOTTEGA_RETRAIN__MAX_ATTEMPTS": "4",
    "BOTTEGA_RETRAIN__BACKOFF_INITIAL_S": "5",
    "BOTTEGA_RETRAIN__BACKOFF_MAX_S": "10",
}


# The first test also pays for the stack's start and its bootstrap.
TIMEOUT_S = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if item.path.is_relative_to(here)]
    for i in slots:
        items[i].add_marker(pytest.mark.timeout(TIMEOUT_S))
    # The broker's test last of this folder (and only of this folder: the suite's other tests
    # keep their order): a Kafka client that its restart leaves stuck (see docs/reliability.md)
    # must not fail the tests of other faults as well.
    ours = sorted((items[i] for i in slots), key=lambda item: item.path.name == "test_broker.py")
    for i, item in zip(slots, ours, strict=True):
        items[i] = item


@pytest.fixture(scope="package")
def fault_stack(
    project_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultStack]:
    """The whole stack, up and bootstrapped; stopped after the last test, failed or not."""
    settings: StackSettings = make_stack_settings(
        project_root, tmp_path_factory.mktemp("faults-home")
    )
    runner: LocalStack = build_local_stack(settings)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SERVICE_OPTIONS.items():
            patch.setenv(name, value)
        try:
            started = time.monotonic()
            runner.up(SERVICES)
            up_s = time.monotonic() - started
            env = command_env(settings, project_root)
            done = subprocess.run(
                [sys.executable, "-m", "bottega.cli", "bootstrap"]
                + ["--days", "1", "--window", "1d", "--model", "logreg"],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
            stack = FaultStack(settings, runner, env, project_root)
            _FIGURES.append(stack.figures)
            stack.figures.record(
                "stack",
                up_seconds=round(up_s, 1),
                bootstrap_seconds=round(time.monotonic() - started - up_s, 1),
            )
            yield stack
        finally:
            runner.down()


@pytest.fixture(autouse=True)
def _whole_stack_again(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, failed or not, bring back whatever it killed: the next test starts
    from the whole stack."""
    yield
    if "fault_stack" in request.fixturenames:
        stack: FaultStack = request.getfixturevalue("fault_stack")
        stack.runner.up(SERVICES)


def command_env(settings: StackSettings, project_root: Path) -> dict[str, str]:
    """The environment of a ``bottega`` command aimed at the private stack."""
    return {
        **os.environ,
        **settings.to_env(),
        "BOTTEGA_ENV_FILE": str(settings.home / "no.env"),
        # The stack is local, whether or not a Docker engine runs (auto mode would pick it).
        "MODE": "local",
        "PYTHONPATH": os.pathsep.join([str(project_root / "platform"), str(project_root)]),
        "COLUMNS": "200",
    }


_FIGURES: list[Figures] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print every figure the fault tests recorded."""
    for figures in _FIGURES:
        terminalreporter.write_sep("-", f"fault figures ({figures.path})")
        for name, values in figures.data.items():
            terminalreporter.write_line(f"{name}: {json.dumps(values)}")
