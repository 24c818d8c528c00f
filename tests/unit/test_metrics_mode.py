"""Feast sets PROMETHEUS_MULTIPROC_DIR when imported; Bottega's metrics must stay in memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bottega.stack.process import INHERITED_ENV_EXCLUDED, child_environment


def test_metrics_stay_in_memory_when_feast_is_imported(project_root: Path) -> None:
    code = (
        "import bottega.usecases.fraud.store, os; "
        "from prometheus_client import values; "
        "print(values.ValueClass.__name__, 'PROMETHEUS_MULTIPROC_DIR' in os.environ)"
    )
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_ENV_EXCLUDED}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    value_class, feast_set_the_variable = done.stdout.split()
    assert value_class == "MutexValue"  # in memory, not file-backed
    assert feast_set_the_variable == "True"  # which is why children must not inherit it


def test_children_do_not_inherit_the_multiprocess_variables(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/feast_metrics_x")
    monkeypatch.setenv("PROMETHEUS_MULTIPROCESS_DIR", "/tmp/feast_metrics_x")
    env = child_environment({"BOTTEGA_HOME": "/x"})
    assert not set(INHERITED_ENV_EXCLUDED) & set(env)
    assert env["BOTTEGA_HOME"] == "/x"
    assert env["PATH"] == os.environ["PATH"]
