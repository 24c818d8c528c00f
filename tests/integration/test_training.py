"""The model lifecycle against the real MLflow server and Kafka broker of the ``stack`` fixture:
bootstrap to a champion, a worse challenger refused, a failed training run that registers
nothing, and clear errors for windows that cannot be trained on.

The tests share one fresh state directory (its own feature store) and run in file order: the
registered model name ``fraud-detector`` is a platform-wide constant.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from bottega.registry import (
    CHAMPION,
    MODEL_NAMES,
    TAG_DECISION,
    TAG_PREVIOUS_CHAMPION,
    TAG_REASON,
    MlflowRegistry,
)
from bottega.settings import BottegaSettings
from bottega.stack.runner import LocalStack
from bottega.stack.settings import StackSettings
from bottega.usecases.fraud.store import FraudFeatureStore
from pipelines.promote.job import holdout_of, logged_holdout
from pipelines.train.config import TrainConfig
from pipelines.train.data import TrainingDataError, default_end
from pipelines.train.job import train
from tests.integration.conftest import private_mlflow

NAME = MODEL_NAMES["fraud"]


@dataclass(frozen=True)
class Lifecycle:
    env: dict[str, str]
    settings: BottegaSettings
    registry: MlflowRegistry


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def last_json(stdout: str) -> dict[str, object]:
    # MLflow prints its run links on stdout too; the job's report is the last line.
    data: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    return data


@pytest.fixture(scope="module")
def lifecycle(
    stack: LocalStack,
    stack_settings: StackSettings,
    project_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Lifecycle]:
    home = tmp_path_factory.mktemp("lifecycle-home")
    # A registry of its own: these tests reason about the first champion and its successors.
    with private_mlflow(project_root, tmp_path_factory.mktemp("lifecycle-mlflow")) as own:
        settings = BottegaSettings(  # type: ignore[call-arg]
            _env_file=None,
            project_root=project_root,
            home=home,
            kafka=stack_settings.kafka,
            mlflow=own.mlflow,
        )
        env = {
            **os.environ,
            **settings.to_env(),
            "BOTTEGA_ENV_FILE": str(home / "no.env"),
            "PYTHONPATH": os.pathsep.join([str(project_root / "platform"), str(project_root)]),
            "COLUMNS": "200",
        }
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        try:
            yield Lifecycle(env, settings, MlflowRegistry(settings.mlflow_tracking_uri))
        finally:
            mlflow.set_tracking_uri(previous)


def test_bootstrap_ends_with_a_champion(lifecycle: Lifecycle) -> None:
    done = run(
        lifecycle.env,
        "-c",
        "from bottega.cli import main; main()",
        "bootstrap",
        "--days",
        "3",
        "--window",
        "2d",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    champion = lifecycle.registry.by_alias(NAME, CHAMPION)
    assert champion is not None
    assert champion.tags[TAG_DECISION] == "promoted"
    assert "first valid model" in champion.tags[TAG_REASON]
    artifacts = {
        f.path
        for f in MlflowClient(lifecycle.settings.mlflow_tracking_uri).list_artifacts(
            champion.run_id
        )
    }
    assert {"training_window.json", "data_fingerprint.json", "feature_service.json"} <= artifacts
    # MLflow 3 keeps the model itself as a LoggedModel, outside the run's artifacts.
    assert {"plots", "reference", "metrics", "holdout"} <= artifacts
    # The promotion judged it on the holdout its run logged: exactly the rows that the window
    # and cut-off in its tags rebuild from the store, with the same values.
    mlflow.set_tracking_uri(lifecycle.settings.mlflow_tracking_uri)
    logged = logged_holdout(champion)
    assert logged is not None and len(logged) == champion.metrics["holdout_rows"]
    rebuilt = holdout_of(FraudFeatureStore(lifecycle.settings), champion)
    pd.testing.assert_frame_equal(
        logged.sort_values("event_id").reset_index(drop=True),
        rebuilt.sort_values("event_id").reset_index(drop=True),
        check_dtype=False,
    )
    assert (
        champion.metrics["holdout_pr_auc"]
        > champion.metrics["holdout_frauds"] / (champion.metrics["holdout_rows"])
    )
    shown = run(lifecycle.env, "-c", "from bottega.cli import main; main()", "models")
    assert shown.returncode == 0 and "champion" in shown.stdout


def test_a_challenger_on_shuffled_labels_is_refused_with_its_reason(lifecycle: Lifecycle) -> None:
    before = lifecycle.registry.by_alias(NAME, CHAMPION)
    assert before is not None
    trained = run(lifecycle.env, "-m", "pipelines.train", "--window", "2d", "--shuffle-labels")
    assert trained.returncode == 0, trained.stderr[-3000:]
    version = str(last_json(trained.stdout)["version"])
    decided = run(lifecycle.env, "-m", "pipelines.promote", "--version", version)
    assert decided.returncode == 0, decided.stderr[-3000:]
    report = last_json(decided.stdout)
    assert report["promoted"] is False
    assert report["published"] is True
    refused = lifecycle.registry.get(NAME, version)
    assert refused.tags[TAG_DECISION] == "rejected"
    assert refused.tags[TAG_REASON] == report["reason"]
    assert "bottega.decision.challenger_pr_auc" in refused.tags
    after = lifecycle.registry.by_alias(NAME, CHAMPION)
    assert after is not None and after.version == before.version


def test_a_failure_mid_training_registers_nothing(lifecycle: Lifecycle) -> None:
    versions_before = [v.version for v in lifecycle.registry.versions(NAME)]
    champion_before = lifecycle.registry.by_alias(NAME, CHAMPION)

    def crash(epoch: int, val_pr_auc: float) -> None:
        if epoch == 2:
            raise RuntimeError("the GPU fell off the bus")

    config = TrainConfig(window=timedelta(days=2), epochs=5)
    with pytest.raises(RuntimeError, match="fell off"):
        train(lifecycle.settings, config, on_epoch=crash)
    assert [v.version for v in lifecycle.registry.versions(NAME)] == versions_before
    champion_after = lifecycle.registry.by_alias(NAME, CHAMPION)
    assert champion_before is not None and champion_after is not None
    assert champion_after.version == champion_before.version
    last = mlflow.search_runs(experiment_names=["fraud"], max_results=1, output_format="list")[0]
    assert last.info.status == "FAILED"


def test_an_empty_window_fails_with_a_clear_error(lifecycle: Lifecycle) -> None:
    done = run(lifecycle.env, "-m", "pipelines.train", "--end", "2020-01-01T00:00:00")
    assert done.returncode == 1
    assert "holds no labelled transactions" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_single_class_window_fails_with_a_clear_error(lifecycle: Lifecycle) -> None:
    fs = FraudFeatureStore(lifecycle.settings)
    end = default_end(fs)
    # The oldest few minutes of history: a handful of transactions, none of them fraud.
    start = fs.transactions.query("SELECT min(event_timestamp) AS m FROM t")["m"][0].as_py()
    frauds = fs.labels.query(
        "SELECT count(*) AS n FROM t WHERE is_fraud AND transaction_time < ?",
        [start + timedelta(minutes=10)],
    )["n"][0].as_py()
    assert frauds == 0 and end > start
    config = TrainConfig(window=timedelta(minutes=10), end=start + timedelta(minutes=10))
    with pytest.raises(TrainingDataError, match="all legitimate: a classifier needs both"):
        train(lifecycle.settings, config)


def bottega(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run(env, "-c", "from bottega.cli import main; main()", *args)


def test_train_and_promote_commands_decide_while_kafka_is_down(lifecycle: Lifecycle) -> None:
    champion = lifecycle.registry.by_alias(NAME, CHAMPION)
    assert champion is not None
    trained = bottega(lifecycle.env, "train", "--model", "rules", "--window", "2d")
    assert trained.returncode == 0, trained.stderr[-3000:]
    version = str(last_json(trained.stdout)["version"])
    # Nothing listens on this port: the model event cannot be published.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    no_kafka = {**lifecycle.env, "BOTTEGA_KAFKA__PORT": str(dead_port)}
    decided = bottega(no_kafka, "promote", "--version", version)
    assert decided.returncode == 0, decided.stderr[-3000:]
    report = last_json(decided.stdout)
    assert report["published"] is False
    assert "could not publish the model event" in decided.stderr
    # The decision stands in the registry, which is the source of truth.
    judged = lifecycle.registry.get(NAME, version)
    expected = "promoted" if report["promoted"] else "rejected"
    assert judged.tags[TAG_DECISION] == expected
    assert judged.tags[TAG_REASON] == report["reason"]


def test_rollback_command_restores_the_previous_champion(lifecycle: Lifecycle) -> None:
    first = lifecycle.registry.by_alias(NAME, CHAMPION)
    assert first is not None
    newer = next(
        v for v in lifecycle.registry.versions(NAME) if int(v.version) > int(first.version)
    )
    # What a promotion of ``newer`` records, done directly so the test does not depend on a
    # retrained model beating the champion.
    lifecycle.registry.set_tags(NAME, newer.version, {TAG_PREVIOUS_CHAMPION: first.version})
    lifecycle.registry.set_alias(NAME, CHAMPION, newer.version)

    done = bottega(lifecycle.env, "rollback")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"from v{newer.version} to v{first.version}" in done.stdout
    restored = lifecycle.registry.by_alias(NAME, CHAMPION)
    assert restored is not None and restored.version == first.version
    assert lifecycle.registry.get(NAME, newer.version).tags[TAG_DECISION] == "rolled_back"

    again = bottega(lifecycle.env, "rollback")
    assert again.returncode != 0
    assert "nothing to roll back" in again.stderr + again.stdout
    assert "Traceback" not in again.stderr


def test_promoting_a_version_that_does_not_exist_fails_clearly(lifecycle: Lifecycle) -> None:
    done = bottega(lifecycle.env, "promote", "--version", "999")
    assert done.returncode != 0
    assert "has no version 999" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
