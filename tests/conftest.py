"""Shared test configuration: every test is marked by the folder it lives in."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER_MARKERS = {"unit", "integration", "e2e", "model", "faults", "docker"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.path).relative_to(ROOT / "tests").parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The checkout."""
    return ROOT
