"""A ``LogRecord`` attribute used as an ``extra`` key raises KeyError where the log call runs:
``log.info("docker compose", extra={"args": ...})`` killed Docker mode's `bottega up` with a
traceback. Every literal ``extra`` dict in the code is checked here, before it can run."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

# What makeRecord refuses to overwrite: a record's own attributes, and "message" and "asctime".
RESERVED = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", (), None))) | {
    "message",
    "asctime",
}
SOURCES = ("platform", "services", "pipelines", "bench")


def extra_keys(source: str) -> list[tuple[int, str]]:
    """Each string key of each literal ``extra={...}`` passed to a call, with its line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                for key in keyword.value.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        found.append((key.lineno, key.value))
    return found


def test_the_check_sees_a_reserved_key() -> None:
    keys = extra_keys('log.info("x", extra={"args": [1], "service": "kafka"})')
    assert [key for _, key in keys if key in RESERVED] == ["args"]
    with pytest.raises(KeyError):
        logging.getLogger("bottega.test").makeRecord(
            "n", logging.INFO, "f", 1, "m", (), None, extra={"args": 1}
        )


def test_no_log_call_uses_a_log_record_attribute_as_an_extra_key(project_root: Path) -> None:
    clashes = []
    for folder in SOURCES:
        for path in sorted((project_root / folder).rglob("*.py")):
            for line, key in extra_keys(path.read_text()):
                if key in RESERVED:
                    clashes.append(f"{path.relative_to(project_root)}:{line}: {key!r}")
    assert clashes == []
