"""The trainer killed with SIGKILL while a run trains, during a replay, and restarted.

The champion must not change, the run must read back as ``interrupted`` after the restart,
and the next retrain alert must retrain.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import psutil

from tests.faults.harness import FaultStack, Trainer, champion_and_versions, running, wait_for


def training_job(fault_stack: FaultStack) -> psutil.Process | None:
    """The trainer's process running ``pipelines.train``, while one runs.

    Jobs run in warm ``pipelines.worker`` processes, started before their job is known: the
    trainer's log names the pid that took the job.
    """
    record = fault_stack.runner.pid_file("trainer").read()
    assert record is not None
    children = {c.pid: c for c in psutil.Process(record.pid).children(recursive=True)}
    log_path = fault_stack.settings.home / "logs" / "trainer.log"
    for line in reversed(log_path.read_text(errors="replace").splitlines()):
        if '"starting a job"' not in line:
            continue
        started = json.loads(line)
        if started.get("job") == "pipelines.train" and started.get("pid") in children:
            return children[started["pid"]]
    return None


def test_a_trainer_killed_mid_training_keeps_the_champion_and_retrains_on_the_next_alert(
    fault_stack: FaultStack,
) -> None:
    settings = fault_stack.settings
    champion, versions = champion_and_versions(settings)
    assert champion is not None
    trainer = Trainer(settings)
    with fault_stack.replay(timedelta(minutes=30)) as replay:
        replay.wait_transactions(100)
        run_id = trainer.retrain("faults: killed mid-training")
        job = wait_for(lambda: training_job(fault_stack), timeout_s=60, what="a training job")
        assert isinstance(job, psutil.Process)
        wait_for(lambda: trainer.run(run_id)["status"] == "running", timeout_s=30, what="running")
        fault_stack.kill("trainer")
        champion_after_kill, _ = champion_and_versions(settings)
        # The restart stops the orphaned training job (the runner stops what is left of a dead
        # service's process group), and says so if it could not.
        restart_s = fault_stack.restart("trainer")
        assert not running(job), "the training job outlived its trainer's restart"
        stats = replay.finish()
    assert stats.predict_errors == 0
    assert champion_after_kill == champion

    interrupted = trainer.run(run_id)
    assert interrupted["status"] == "interrupted"
    assert interrupted["decision"] is None

    started = time.monotonic()
    next_run = trainer.alert("ModelQualityDegraded")
    assert next_run != run_id
    done = wait_for(
        lambda: (r := trainer.run(next_run))["status"] in {"succeeded", "failed"} and r,
        timeout_s=300,
        what="the next run to end",
    )
    assert isinstance(done, dict)
    assert done["status"] == "succeeded", done
    assert done["trigger"] == "alert" and done["alerts"] == ["ModelQualityDegraded"]
    assert len(done["attempts"]) == 1
    champion_now, versions_now = champion_and_versions(settings)
    assert done["version"] in versions_now - versions
    if done["decision"] == "promoted":
        assert champion_now == done["version"]
    else:
        assert done["decision"] == "rejected" and champion_now == champion

    fault_stack.figures.record(
        "trainer",
        champion_before=champion,
        champion_after_kill=champion_after_kill,
        interrupted_run_status=interrupted["status"],
        next_run_status=done["status"],
        next_run_decision=done["decision"],
        next_run_version=done["version"],
        next_run_seconds=round(time.monotonic() - started, 1),
        restart_seconds=round(restart_s, 1),
        replay_transactions=stats.transactions,
    )
