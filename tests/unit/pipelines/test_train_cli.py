"""``python -m pipelines.train`` checks its arguments and config before it loads the job: a
mistake is reported at once, without importing torch, Feast or MLflow (about 10 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# A fresh interpreter, so that what this test process imported does not count.
PROBE = """
import json, sys
from pipelines.train.__main__ import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "feast", "mlflow") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--window", "forever"], "error: not a duration: 'forever'"),
        (["--config", "/nonexistent/train.yaml"], "error: cannot read the training config"),
    ],
)
def test_a_bad_argument_fails_before_the_job_is_imported(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}",
            "PATH": "/usr/bin:/bin",
            "BOTTEGA_HOME": str(tmp_path),
            "BOTTEGA_ENV_FILE": str(tmp_path / "no.env"),
        },
    )
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe == {"code": 1, "heavy": []}, (probe, done.stderr)
    assert done.stderr.startswith(expected), done.stderr
