"""``python -m pipelines.worker``: a job process started before its job is known.

The trainer runs each training and promotion job in a process of its own, so that a crash, an
out-of-memory kill or a timeout ends that job only. Importing the jobs' code (torch, MLflow,
Feast, pandas) takes about 10 s of a quiet 2-core machine and 40 s beside a replay, which would
delay every retraining by as much. This process imports it first, then reads one line from stdin
naming its job, ``{"module": "pipelines.train", "args": ["--window", "172800s"]}``, runs that
job's ``main`` and exits with its status. One job per process: nothing a job leaves behind
(memory, threads, MLflow's active run) reaches the next one.

End of input before a line (the trainer stopped, or died) exits 0 with nothing done.
"""

from __future__ import annotations

import importlib
import json
import sys
from types import ModuleType

# The jobs a worker can run: the name the trainer uses, and the module whose main runs it.
JOBS = {
    "pipelines.train": "pipelines.train.__main__",
    "pipelines.promote": "pipelines.promote.__main__",
}


class BadRequest(ValueError):
    """The job request line is not a known job with a list of arguments."""


def parse_request(line: str) -> tuple[str, list[str]]:
    """The job and its arguments from one request line."""
    try:
        request = json.loads(line)
    except ValueError as exc:
        raise BadRequest(f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest("not a JSON object")
    module, args = request.get("module"), request.get("args", [])
    if module not in JOBS:
        raise BadRequest(f"unknown job {module!r}: one of {', '.join(JOBS)}")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise BadRequest("args must be a list of strings")
    return module, args


def main() -> int:
    """Import every job, wait for one request, run it."""
    mains: dict[str, ModuleType] = {name: importlib.import_module(m) for name, m in JOBS.items()}
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    try:
        module, args = parse_request(line)
    except BadRequest as exc:
        sys.stderr.write(f"error: a bad job request: {exc}\n")
        return 2
    status: int = mains[module].main(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
