"""Building an :class:`MlflowRegistry` keeps MLflow from loading Feast's request-header plugin,
which imports the whole ``feast`` package (about 6 s) in processes that never use Feast."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: this test process may have imported Feast or MLflow's plugins already.
PROBE = """
import json, sys
from bottega.registry import MlflowRegistry
MlflowRegistry("http://127.0.0.1:9")
from mlflow.tracking.request_header.registry import _request_header_provider_registry as loaded
from mlflow.tracking.request_header.registry import resolve_request_headers
headers = resolve_request_headers()
print(json.dumps({
    "feast_imported": "feast" in sys.modules,
    "providers": [type(p).__module__ for p in loaded],
    "headers": sorted(headers),
}))
"""


def test_feast_registers_the_plugin_that_the_registry_leaves_out() -> None:
    # The cost is real: Feast does register an MLflow header provider ...
    feast_points = [
        p
        for p in entry_points(group="mlflow.request_header_provider")
        if p.value.startswith("feast.")
    ]
    assert feast_points
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    # ... and with the registry built first, MLflow registers only its own and imports no Feast.
    assert probe["feast_imported"] is False, probe
    assert probe["providers"] and all(m.startswith("mlflow.") for m in probe["providers"]), probe
    # MLflow's own default headers are still resolved.
    assert "User-Agent" in probe["headers"], probe


def test_skipping_is_idempotent_and_says_when_it_is_too_late() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bottega.registry import skip_feast_mlflow_plugin as s; a = s(); b = s(); "
            "import mlflow.tracking.request_header.registry; print(a, b, s())",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={"PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.split() == ["True", "True", "False"]
