"""The per-window HTML reports on disk, each with a JSON summary beside it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_.-]+$")


class ReportStore:
    """Writes, lists and prunes the reports of one directory."""

    def __init__(self, directory: Path, keep: int) -> None:
        self.directory = directory
        self.keep = keep

    def save(self, name: str, summary: dict[str, Any], write_html: Callable[[Path], None]) -> Path:
        """Write the report and its summary; drop the oldest beyond ``keep``."""
        if not NAME.match(name):
            raise ValueError(f"not a report name: {name!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        html = self.directory / f"{name}.html"
        partial = html.with_suffix(".html.partial")
        write_html(partial)
        partial.replace(html)
        (self.directory / f"{name}.json").write_text(json.dumps({"name": name, **summary}))
        self._prune()
        return html

    def list(self) -> list[dict[str, Any]]:
        """Every report's summary, newest first."""
        if not self.directory.exists():
            return []
        out = []
        for path in sorted(self.directory.glob("*.json"), reverse=True):
            if (path.with_suffix(".html")).exists():
                out.append(json.loads(path.read_text()))
        return out

    def html(self, name: str) -> Path | None:
        """The report's HTML file, or None (also for any name that is not a report's)."""
        if not NAME.match(name):
            return None
        path = self.directory / f"{name}.html"
        return path if path.exists() else None

    def _prune(self) -> None:
        names = sorted(p.stem for p in self.directory.glob("*.html"))
        for name in names[: max(0, len(names) - self.keep)]:
            for suffix in (".html", ".json"):
                (self.directory / f"{name}{suffix}").unlink(missing_ok=True)
