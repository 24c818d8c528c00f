"""What the Docker-mode tests share: the compose files as compose reads them, and the metric
names that the Grafana dashboards query."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bottega.stack.compose import active_services, load_compose

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
DASHBOARDS = ROOT / "monitoring" / "grafana" / "dashboards"
# What `bottega up` passes compose; test values, never real ones.
SECRETS = {
    "POSTGRES_PASSWORD": "test-postgres-password",
    "BOTTEGA_TRAINER__TOKEN": "test-trainer-token",
    "BOTTEGA_GRAFANA__ADMIN_PASSWORD": "test-grafana-password",
}
# Series that Prometheus writes itself rather than scrapes: the health of each target and the
# state of each alert.
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}


def compose(*files: str) -> dict[str, Any]:
    """The compose files, interpolated with the test secrets and defaults, merged in order the
    way compose merges an override (mappings deep-merged)."""
    merged: dict[str, Any] = {}
    for name in files or ("compose.yaml",):
        merged = _merge(merged, load_compose(INFRA / name, SECRETS))
    return merged


def raw_compose() -> dict[str, Any]:
    """``infra/compose.yaml`` as written, before interpolation."""
    return load_compose(INFRA / "compose.yaml")


def services(*files: str) -> dict[str, dict[str, Any]]:
    """The services `up` starts."""
    return active_services(compose(*files))


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return override


def dashboards() -> dict[str, dict[str, Any]]:
    """Every provisioned dashboard, by file name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: its panels' targets and its annotations."""
    exprs = [t["expr"] for panel in dashboard.get("panels", []) for t in panel.get("targets", [])]
    exprs += [a["expr"] for a in dashboard.get("annotations", {}).get("list", []) if "expr" in a]
    return exprs


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
_KEYWORDS |= {"unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels or keywords)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def dashboard_metric_names() -> dict[str, set[str]]:
    """Each metric name the dashboards query, with the dashboards that query it."""
    found: dict[str, set[str]] = {}
    for name, dashboard in dashboards().items():
        for expr in queries(dashboard):
            for metric in metric_names(expr):
                found.setdefault(metric, set()).add(name)
    return found
