"""The ``loop`` benchmark: the closed loop, timed, on a private copy of the whole local stack.

It starts every service on free ports in a temporary home and runs ``bottega demo`` against it
(bootstrap, a calm ``baseline`` replay, then ``fraud-ring`` for the same simulated length), then
reads the demo's timeline:

- ``detection_delay_sim_s`` / ``_wall_s``: from the drift onset (the ring phase's first event)
  to the first retrain alert firing in Prometheus; ``detection_delay_windows`` is the simulated
  delay in monitor windows (target: at most 2);
- ``loop_seconds``: from that alert to the new champion's first ``/predict`` answer (target:
  under 180 on this CPU);
- ``pr_auc_recovered``: the new champion's PR-AUC on the ring phase's labelled transactions it
  answered, and ``pr_auc_oracle_new_regime``, the oracle's on the same rows; their ratio
  ``recovered_vs_oracle`` (target: at least 0.85). ``pr_auc_old_champion_new_regime`` is the
  old champion's on the rows it answered in the same phase;
- ``calm_retrain_runs``: retraining runs the calm replay started (target: 0);
- ``demo_seconds``: the whole demo, bootstrap included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.broker import whole_stack_settings
from bench.harness import Benchmark, BenchmarkError, Measurement
from bottega.stack.services import build_local_stack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The loop benchmark's options."""
    parser.add_argument("--speed", type=float, default=600.0, help="simulated s per wall s")
    parser.add_argument("--duration", default="36h", help="simulated length of each replay")


def run(options: argparse.Namespace) -> Measurement:
    """Start the private stack, run the demo, and read its figures."""
    with tempfile.TemporaryDirectory(prefix="bottega-bench-loop-") as tmp:
        home = Path(tmp)
        settings = whole_stack_settings(home)
        stack = build_local_stack(settings)
        out = home / "demo.json"
        env = {
            **os.environ,
            **settings.to_env(),
            "BOTTEGA_ENV_FILE": str(home / "no.env"),
            # The demo plays against this private local stack, whether or not Docker runs.
            "MODE": "local",
            "COLUMNS": "200",
        }
        command = [
            sys.executable,
            "-m",
            "bottega.cli",
            "demo",
            "--speed",
            str(options.speed),
            "--duration",
            options.duration,
            "--json",
            str(out),
        ]
        try:
            stack.up()
            started = time.monotonic()
            done = subprocess.run(command, env=env, check=False, cwd=settings.project_root)
            seconds = time.monotonic() - started
        finally:
            stack.down()
        if not out.exists():
            raise BenchmarkError(f"the demo wrote no result (exit status {done.returncode})")
        result = json.loads(out.read_text())
    figures: dict[str, float] = dict(result["figures"])
    missing = [
        k for k in ("detection_delay_sim_s", "loop_seconds", "pr_auc_recovered") if k not in figures
    ]
    if missing:
        raise BenchmarkError(f"the loop did not close: no {', '.join(missing)}; see the demo log")
    figures["calm_retrain_runs"] = float(len(result["false_alarm_runs"]))
    figures["demo_seconds"] = round(seconds, 1)
    ratios = {
        "recovered_vs_oracle": figures["pr_auc_recovered"] / figures["pr_auc_oracle_new_regime"]
    }
    if figures.get("pr_auc_old_champion_new_regime"):
        ratios["recovered_vs_old_champion"] = (
            figures["pr_auc_recovered"] / figures["pr_auc_old_champion_new_regime"]
        )
    return Measurement(metrics=figures, ratios=ratios)


BENCHMARK = Benchmark(
    name="loop",
    summary="the closed loop: detection delay, loop time and recovered PR-AUC vs the oracle",
    add_arguments=add_arguments,
    run=run,
)
