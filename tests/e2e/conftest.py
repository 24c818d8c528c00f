"""One private local stack for the end-to-end tests: every service on free ports, its own state,
stopped when the last test of this folder ends.

The tests in this folder share it, in file order: the loop (``test_loop.py``) bootstraps the
champion that the scenario tests then replay against.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bottega.stack.runner import LocalStack
from bottega.stack.services import build_local_stack
from bottega.stack.settings import StackSettings
from tests.integration.conftest import make_stack_settings


@pytest.fixture(scope="package")
def loop_stack(
    project_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackSettings]:
    """The whole stack, up; stopped after the last test, failed or not."""
    settings = make_stack_settings(project_root, tmp_path_factory.mktemp("loop-home"))
    stack: LocalStack = build_local_stack(settings)
    try:
        stack.up()
        yield settings
    finally:
        stack.down()


@pytest.fixture(scope="package")
def loop_env(loop_stack: StackSettings, project_root: Path) -> dict[str, str]:
    """The environment of a ``bottega`` command aimed at the private stack."""
    return {
        **os.environ,
        **loop_stack.to_env(),
        "BOTTEGA_ENV_FILE": str(loop_stack.home / "no.env"),
        # The stack is local, whether or not a Docker engine runs (auto mode would pick it).
        "MODE": "local",
        "PYTHONPATH": os.pathsep.join([str(project_root / "platform"), str(project_root)]),
        "COLUMNS": "200",
    }
