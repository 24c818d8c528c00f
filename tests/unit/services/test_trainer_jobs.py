"""Reading the jobs' reports and errors, and the job runner's handling of a child process."""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from pipelines.worker import BadRequest, parse_request
from services.trainer.jobs import JobFailed, SubprocessJobs, format_duration, last_error, last_json


def test_the_report_is_the_last_stdout_line() -> None:
    out = "View run at http://mlflow/#/runs/1\n" + '{"version": "7", "run_id": "r"}\n'
    assert last_json("pipelines.train", out) == {"version": "7", "run_id": "r"}
    with pytest.raises(JobFailed, match="no JSON report"):
        last_json("pipelines.train", "just a link\n")
    with pytest.raises(JobFailed):
        last_json("pipelines.train", "")


def test_the_error_is_the_jobs_own_error_line_else_the_tail() -> None:
    assert last_error('{"level": "error"}\nerror: the window holds nothing (hint)\n') == (
        "the window holds nothing (hint)"
    )
    assert last_error("Traceback\n  boom\nValueError: x\n").endswith("ValueError: x")
    assert last_error("") == "no output"


def test_durations_are_written_as_the_pipelines_read_them() -> None:
    assert format_duration(timedelta(days=1)) == "86400s"


def test_a_failing_child_is_a_job_failure_and_its_start_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A "python" that exits 1 with an error line stands in for a job that fails.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'error: no labelled transactions' >&2\nexit 1\n")
    fake.chmod(0o755)
    jobs = SubprocessJobs({}, cwd=tmp_path, window=timedelta(seconds=1), python=str(fake))
    with caplog.at_level(logging.INFO), pytest.raises(JobFailed, match="no labelled"):
        jobs.train()
    assert any(r.getMessage() == "starting a job" for r in caplog.records)
    jobs.cancel()  # nothing in flight: no error


def test_a_job_past_its_timeout_is_killed(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    # A job that hangs until it is killed.
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import signal; signal.pause()'\n")
    fake.chmod(0o755)
    jobs = SubprocessJobs(
        {}, cwd=tmp_path, window=timedelta(days=1), timeout_s=0.5, python=str(fake)
    )
    with pytest.raises(JobFailed, match="killed"):
        jobs.promote("3")


def test_a_job_gives_up_on_an_unreachable_registry_in_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "python" that prints what the MLflow client will read from its environment.
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        'echo "{\\"version\\": \\"$MLFLOW_HTTP_REQUEST_MAX_RETRIES'
        '/$MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR\\"}"\n'
    )
    fake.chmod(0o755)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    jobs = SubprocessJobs({}, cwd=tmp_path, window=timedelta(days=1), python=str(fake))
    assert jobs.train()["version"] == "2/1"
    # Set by whoever runs the trainer, they win.
    jobs = SubprocessJobs(
        {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5"},
        cwd=tmp_path,
        window=timedelta(days=1),
        python=str(fake),
    )
    assert jobs.train()["version"] == "5/1"


def echoing_python(tmp_path: Path) -> Path:
    """A "python" that, as a worker does, waits for its job on stdin and reports it with its pid."""
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\nread line\n"
        'echo "{\\"version\\": \\"7\\", \\"pid\\": $$, \\"request\\": $line}"\n'
    )
    fake.chmod(0o755)
    return fake


def test_a_job_runs_in_a_warm_worker_and_the_pool_is_refilled_after_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = SubprocessJobs(
        {}, cwd=tmp_path, window=timedelta(days=2), python=str(echoing_python(tmp_path)), warm=2
    )
    jobs.start()
    warm_pids = [p.pid for p in jobs._spares]
    assert len(warm_pids) == 2
    try:
        with caplog.at_level(logging.INFO):
            trained = jobs.train()
        assert trained["pid"] == warm_pids[0]
        assert trained["request"] == {
            "module": "pipelines.train",
            "args": ["--window", "172800s", "--model", "mlp", "--holdout", "cards"],
        }
        started = [r for r in caplog.records if r.getMessage() == "starting a job"]
        assert started[-1].pid == warm_pids[0] and started[-1].warm is True  # type: ignore[attr-defined]
        # One spare left: the promotion takes it; only then, the pool empty, is it refilled.
        assert [p.pid for p in jobs._spares] == warm_pids[1:]
        promoted = jobs.promote("7")
        assert promoted["pid"] == warm_pids[1]
        assert promoted["request"] == {"module": "pipelines.promote", "args": ["--version", "7"]}
        refilled = [p.pid for p in jobs._spares]
        assert len(refilled) == 2 and not set(refilled) & set(warm_pids)
    finally:
        spares = list(jobs._spares)
        jobs.cancel()
    assert all(p.poll() is not None for p in spares)  # killed and reaped
    with pytest.raises(JobFailed, match="stopping"):
        jobs.train()


def test_a_dead_warm_worker_is_passed_over_and_without_warm_workers_a_job_starts_cold(
    tmp_path: Path,
) -> None:
    python = str(echoing_python(tmp_path))
    jobs = SubprocessJobs({}, cwd=tmp_path, window=timedelta(days=1), python=python, warm=1)
    jobs.start()
    dead = jobs._spares[0]
    dead.kill()
    dead.wait()
    try:
        report = jobs.promote("2")
        assert report["pid"] != dead.pid and report["request"]["module"] == "pipelines.promote"
    finally:
        jobs.cancel()
    cold = SubprocessJobs({}, cwd=tmp_path, window=timedelta(days=1), python=python)
    cold.start()
    assert cold._spares == []
    assert cold.promote("3")["request"]["args"] == ["--version", "3"]
    degraded = cold.promote("4", champion_degraded=True)["request"]["args"]
    assert degraded == ["--version", "4", "--champion-degraded"]
    assert cold._spares == []


def test_a_worker_request_names_a_known_job_and_a_list_of_strings() -> None:
    assert parse_request('{"module": "pipelines.promote", "args": ["--version", "3"]}') == (
        "pipelines.promote",
        ["--version", "3"],
    )
    for bad, why in [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"module": "os.system", "args": []}', "unknown job 'os.system'"),
        ('{"module": "pipelines.train", "args": "--window 1d"}', "list of strings"),
        ('{"module": "pipelines.train", "args": [1]}', "list of strings"),
    ]:
        with pytest.raises(BadRequest, match=why):
            parse_request(bad)
