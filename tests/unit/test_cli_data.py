"""The data commands, through the real CLI app (no services needed)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bottega.cli import app


def test_simulate_reports_the_oracle_window_by_window(project_root: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--scenario",
            str(project_root / "scenarios" / "baseline.yaml"),
            "--duration",
            "12h",
            "--window",
            "6h",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "oracle_pr_auc" in result.output
    assert "overall:" in result.output and "fraud_rate=" in result.output


def test_a_bad_scenario_gets_one_line_naming_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nseed: 1\nstart: 2026-01-01T00:00:00Z\nphases:\n"
        "  - name: p\n    duration: 1h\n    rate_per_hour: -5\n"
    )
    result = CliRunner().invoke(app, ["simulate", "--scenario", str(bad)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"{bad}:7" in result.output and "rate_per_hour" in result.output


def test_a_bad_duration_is_named() -> None:
    result = CliRunner().invoke(app, ["simulate", "--duration", "soon"])
    assert result.exit_code == 1
    assert "not a duration: 'soon'" in result.output
