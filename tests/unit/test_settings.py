from pathlib import Path

import pytest
from pydantic import ValidationError

from bottega.settings import BottegaSettings, Endpoint, load_settings
from bottega.stack.settings import StackSettings


def test_defaults_match_the_design_port_table(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("BOTTEGA_"):
            monkeypatch.delenv(key)
    s = BottegaSettings(_env_file=None)  # type: ignore[call-arg]
    ports = {
        "kafka": s.kafka.port,
        "serving": s.serving.port,
        "grafana": s.grafana.port,
        "mlflow": s.mlflow.port,
        "trainer": s.trainer.port,
        "monitor": s.monitor.port,
        "ingest": s.ingest.port,
        "prometheus": s.prometheus.port,
        "alertmanager": s.alertmanager.port,
    }
    assert ports == {
        "kafka": 9092,
        "serving": 3000,
        "grafana": 3001,
        "mlflow": 5000,
        "trainer": 8081,
        "monitor": 8082,
        "ingest": 8083,
        "prometheus": 9090,
        "alertmanager": 9093,
    }
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.mlflow_tracking_uri == "http://127.0.0.1:5000"


def test_nested_environment_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTTEGA_KAFKA__PORT", "19092")
    monkeypatch.setenv("BOTTEGA_MLFLOW__HOST", "mlflow")
    monkeypatch.setenv("BOTTEGA_STACK__STARTUP_TIMEOUT_S", "5")
    s = StackSettings(_env_file=None)  # type: ignore[call-arg]
    assert s.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert s.mlflow_tracking_uri == "http://mlflow:5000"
    assert s.stack.startup_timeout_s == 5


def test_env_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "bottega.env"
    env_file.write_text("BOTTEGA_PROMETHEUS__PORT=19090\nBOTTEGA_ALERTMANAGER__PORT=19093\n")
    monkeypatch.setenv("BOTTEGA_ENV_FILE", str(env_file))
    monkeypatch.setenv("BOTTEGA_ALERTMANAGER__PORT", "29093")
    s = load_settings(StackSettings)
    assert s.prometheus.port == 19090
    assert s.alertmanager.port == 29093


def test_relative_home_resolves_under_the_project(tmp_path: Path) -> None:
    s = BottegaSettings(_env_file=None, project_root=tmp_path, home=Path("state"))  # type: ignore[call-arg]
    assert s.home == tmp_path / "state"
    assert s.monitoring_dir == tmp_path / "monitoring"
    absolute = BottegaSettings(_env_file=None, home=tmp_path / "elsewhere")  # type: ignore[call-arg]
    assert absolute.home == tmp_path / "elsewhere"


def test_a_port_out_of_range_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTTEGA_MLFLOW__PORT", "70000")
    with pytest.raises(ValidationError, match="mlflow.port"):
        BottegaSettings(_env_file=None)  # type: ignore[call-arg]


def test_unknown_stack_option_is_rejected() -> None:
    with pytest.raises(ValidationError, match="startup_timeout"):
        StackSettings(_env_file=None, stack={"startup_timeout": 3})  # type: ignore[call-arg,arg-type]


def test_endpoint_urls() -> None:
    e = Endpoint(host="prometheus", port=9090)
    assert e.address == "prometheus:9090"
    assert e.url == "http://prometheus:9090"


def test_to_env_round_trips_through_a_child_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = StackSettings(  # type: ignore[call-arg]
        _env_file=None,
        home=tmp_path,
        kafka={"port": 19092, "controller_port": 19094},
        ingest={"port": 18083},
        feast={"online_store": "redis"},
    )
    env = original.to_env()
    assert env["BOTTEGA_KAFKA__PORT"] == "19092"
    assert env["BOTTEGA_HOME"] == str(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("BOTTEGA_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = BottegaSettings(_env_file=None)  # type: ignore[call-arg]
    assert child.kafka == original.kafka
    assert child.ingest == original.ingest
    assert child.feast == original.feast
    assert child.home == original.home
