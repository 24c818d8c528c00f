"""The ``bottega`` command line, run as a user runs it, with arguments it cannot act on, against
a real MLflow server of its own: nonexistent versions, promoting with no model, rolling back with
no previous champion, bad scenarios and bad options. Each exits non-zero with one clear line
(and at most a hint), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from bottega.registry import CHAMPION, MODEL_NAMES
from bottega.settings import BottegaSettings

from .conftest import free_ports, private_mlflow

NAME = MODEL_NAMES["fraud"]
BAD_RATE = """\
name: bad
seed: 1
start: 2025-01-06T00:00:00Z
phases:
  - name: calm
    duration: 1h
    rate_per_hour: -3
"""


@dataclass(frozen=True)
class Cli:
    env: dict[str, str]
    tracking_uri: str
    tmp: Path


@pytest.fixture(scope="module")
def cli(project_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    tmp = tmp_path_factory.mktemp("bad-cli")
    with private_mlflow(project_root, tmp / "mlflow") as own:
        (kafka, serving) = free_ports(2)  # nothing listens there
        settings = BottegaSettings(  # type: ignore[call-arg]
            _env_file=None,
            project_root=project_root,
            home=tmp / "home",
            mlflow=own.mlflow,
            kafka={"port": kafka},
            serving={"port": serving},
        )
        env = {
            **os.environ,
            **settings.to_env(),
            "BOTTEGA_ENV_FILE": str(tmp / "no.env"),
            # The stack these commands talk to is local, whether or not a Docker engine runs.
            "MODE": "local",
            "PYTHONPATH": os.pathsep.join([str(project_root / "platform"), str(project_root)]),
            # Wide enough that rich never wraps a message onto a second line.
            "COLUMNS": "1000",
        }
        yield Cli(env, settings.mlflow_tracking_uri, tmp)


def bottega(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from bottega.cli import main; main()", *args],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fails_clearly(done: subprocess.CompletedProcess[str], expected: str) -> str:
    """Exit 1; stderr is one ``error:`` line holding ``expected``, and at most a hint."""
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert lines and lines[0].startswith("error: "), done.stderr
    assert expected in lines[0], (expected, lines[0])
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), lines
    return lines[0]


def test_promoting_or_rolling_back_with_no_model_fails_clearly(cli: Cli) -> None:
    fails_clearly(bottega(cli, "promote"), f"{NAME} has no registered version")
    fails_clearly(bottega(cli, "promote", "--version", "999"), f"{NAME} has no version 999")
    fails_clearly(bottega(cli, "promote", "--version", "abc"), f"{NAME} has no version abc")
    fails_clearly(bottega(cli, "rollback"), f"{NAME} has no champion to roll back")
    shown = bottega(cli, "models")
    assert shown.returncode == 0 and "has no registered version yet" in shown.stdout


def test_rolling_back_the_first_champion_or_promoting_it_again_fails_clearly(cli: Cli) -> None:
    client = MlflowClient(cli.tracking_uri, registry_uri=cli.tracking_uri)
    client.create_registered_model(NAME)
    run = client.create_run(experiment_id="0")
    version = client.create_model_version(
        NAME, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    ).version
    client.set_registered_model_alias(NAME, CHAMPION, version)

    fails_clearly(bottega(cli, "rollback"), "was the first champion: there is nothing to roll back")
    fails_clearly(bottega(cli, "promote"), f"{NAME} v{version} is already the champion")
    fails_clearly(bottega(cli, "promote", "--version", "7"), f"{NAME} has no version 7")
    # Nothing moved.
    assert client.get_model_version_by_alias(NAME, CHAMPION).version == version


def test_bad_scenarios_fail_clearly_before_anything_is_contacted(cli: Cli) -> None:
    bad = cli.tmp / "bad.yaml"
    bad.write_text(BAD_RATE)
    latin = cli.tmp / "latin.yaml"
    latin.write_bytes(BAD_RATE.replace("calm", "caf\u00e9").encode("latin-1"))
    # The model server is not running: the scenario's mistake is still the one reported.
    line = fails_clearly(bottega(cli, "replay", "--scenario", str(bad)), str(bad))
    assert line == f"error: {bad}:7: phases.0.rate_per_hour: Input should be greater than 0"
    fails_clearly(bottega(cli, "replay", "-s", str(cli.tmp / "nope.yaml")), "no such scenario")
    fails_clearly(bottega(cli, "replay", "-s", str(latin)), "not UTF-8 text (byte 0xe9")
    fails_clearly(bottega(cli, "replay", "-s", str(cli.tmp)), "cannot read")
    fails_clearly(bottega(cli, "backfill", "--scenario", str(bad)), "rate_per_hour")


def test_bad_options_fail_clearly(cli: Cli) -> None:
    fails_clearly(bottega(cli, "replay", "--speed", "-1"), "speed must be positive")
    fails_clearly(bottega(cli, "replay", "--concurrency", "0"), "concurrency must be at least 1")
    fails_clearly(bottega(cli, "replay", "--duration", "soon"), "invalid duration 'soon'")
    fails_clearly(
        bottega(cli, "replay", "--start", "2025-01-01T00:00:00"), "--start needs a timezone"
    )
    fails_clearly(bottega(cli, "train", "--window", "forever"), "not a duration: 'forever'")
    fails_clearly(bottega(cli, "train", "--config", str(cli.tmp / "none.yaml")), "none.yaml")
    fails_clearly(bottega(cli, "backfill", "--days", "-2"), "days must be positive")


def test_malformed_options_are_usage_errors(cli: Cli) -> None:
    for args, expected in (
        (("train", "--model", "bogus"), "invalid choice: 'bogus'"),
        (("replay", "--rate", "fast"), "Invalid value for '--rate'"),
        (("promote", "--nope"), "No such option: --nope"),
        (("no-such-command",), "No such command 'no-such-command'"),
    ):
        done = bottega(cli, *args)
        assert done.returncode == 2, (args, done.returncode, done.stderr)
        assert expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr, args
