"""The MLflow server down (SIGKILL) during a replay, a retraining asked for meanwhile, and
MLflow restarted.

While it is down the model server keeps answering with the champion it holds, and says it is
degraded; the trainer's run fails its attempts cleanly and waits to retry, registering nothing
and promoting nothing. Once MLflow is back, the same run's next attempt trains and is judged.
"""

from __future__ import annotations

import time
from datetime import timedelta

import httpx

from bottega.stack.settings import StackSettings
from tests.faults.harness import FaultStack, Trainer, champion_and_versions, wait_for


def serving_state(url: str) -> str | None:
    """The model server's own account of its state (``ready``, ``degraded``...)."""
    try:
        state: str = httpx.get(f"{url}/model", timeout=5).json()["state"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    return state


def mlflow_unreachable(settings: StackSettings) -> bool:
    """True when the registry cannot be read: MLflow is really down."""
    try:
        httpx.get(f"{settings.mlflow.url}/health", timeout=2)
    except httpx.HTTPError:
        return True
    return False


def test_with_mlflow_down_serving_answers_and_retraining_fails_cleanly_then_recovers(
    fault_stack: FaultStack,
) -> None:
    settings = fault_stack.settings
    serving = settings.serving.url
    champion, versions = champion_and_versions(settings)
    assert champion is not None
    trainer = Trainer(settings)
    with fault_stack.replay(timedelta(minutes=40)) as replay:
        replay.wait_transactions(200)
        # The server and its uvicorn workers: a worker left alone would go on answering.
        fault_stack.kill("mlflow", whole=True)
        down = time.monotonic()
        answered_before = replay.stats.predicted
        run_id = trainer.retrain("faults: MLflow is down")
        wait_for(lambda: serving_state(serving) == "degraded", timeout_s=60, what="degraded")
        degraded_after_s = time.monotonic() - down
        # The run fails its attempt cleanly and waits to retry; nothing is registered.
        retrying = wait_for(
            lambda: (r := trainer.run(run_id))["status"] in {"retrying", "failed"} and r,
            timeout_s=300,
            what="the first attempt to fail",
        )
        first_attempt_s = time.monotonic() - down
        assert mlflow_unreachable(settings)
        # The replay may still be playing once MLflow is back, and the run's retry (5-10 s in
        # this stack) may promote its model before the replay ends: only the answers given
        # before the restart must all come from the champion the server held.
        restarted_at = time.time()
        restart_s = fault_stack.restart("mlflow")
        stats = replay.finish()
    assert isinstance(retrying, dict)
    assert retrying["status"] == "retrying", retrying
    # One line that names the cause, not a traceback's tail.
    assert retrying["attempts"][0]["error"].startswith(
        "JobFailed: pipelines.train exited with 1: MLflow failed"
    ), retrying
    assert retrying["next_attempt_at"] is not None
    # The model server answered every request with the champion it held.
    assert stats.predict_errors == 0
    assert stats.predicted == stats.transactions
    assert stats.predicted > answered_before
    answered_before_restart = [s for s in stats.served if s.wall < restarted_at]
    assert len(answered_before_restart) > answered_before
    assert {s.version for s in answered_before_restart} == {champion}
    assert httpx.get(f"{serving}/readyz", timeout=5).status_code == 200

    # Once MLflow is back, a later attempt of the same run trains and is judged.
    done = wait_for(
        lambda: (r := trainer.run(run_id))["status"] in {"succeeded", "failed"} and r,
        timeout_s=300,
        what="the run to end",
    )
    assert isinstance(done, dict)
    assert done["status"] == "succeeded", done
    failed_attempts = [a for a in done["attempts"] if a["error"]]
    assert 1 <= len(failed_attempts) == len(done["attempts"]) - 1
    champion_now, versions_now = champion_and_versions(settings)
    # One version more, the one the successful attempt registered: nothing half-registered.
    assert versions_now - versions == {done["version"]}
    assert champion_now in {champion, done["version"]}
    assert (champion_now == done["version"]) == (done["decision"] == "promoted")
    # After the restart the server answered with the champion or with the run's new model.
    assert set(stats.versions_seen) <= {champion, done["version"]}

    fault_stack.figures.record(
        "mlflow",
        transactions_played=stats.transactions,
        answered=stats.predicted,
        answered_after_mlflow_went_down=stats.predicted - answered_before,
        predict_errors=stats.predict_errors,
        degraded_after_seconds=round(degraded_after_s, 1),
        first_attempt_failed_after_seconds=round(first_attempt_s, 1),
        first_attempt_error=failed_attempts[0]["error"][:200],
        failed_attempts=len(failed_attempts),
        run_status=done["status"],
        run_decision=done["decision"],
        versions_added=sorted(versions_now - versions),
        restart_seconds=round(restart_s, 1),
    )
