from pathlib import Path

import pytest
import yaml

from bottega.errors import ConfigError
from bottega.settings import BottegaSettings
from bottega.stack.monitoring_config import render_prometheus_config


def settings(root: Path, tmp_path: Path) -> BottegaSettings:
    return BottegaSettings(  # type: ignore[call-arg]
        _env_file=None,
        project_root=root,
        home=tmp_path,
        mlflow={"port": 15000},
        alertmanager={"port": 19093},
        prometheus={"port": 19090},
    )


def test_targets_take_hosts_and_ports_from_settings(project_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "prometheus.yml"
    render_prometheus_config(settings(project_root, tmp_path), out)
    config = yaml.safe_load(out.read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets["mlflow"] == ["127.0.0.1:15000"]
    assert targets["prometheus"] == ["127.0.0.1:19090"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:19093"
    ]
    assert all(Path(p).is_absolute() for p in config["rule_files"])


def test_the_committed_config_differs_only_in_targets(project_root: Path, tmp_path: Path) -> None:
    committed = yaml.safe_load((project_root / "monitoring" / "prometheus.yml").read_text())
    rendered = render_prometheus_config(settings(project_root, tmp_path), tmp_path / "p.yml")
    assert [j["job_name"] for j in committed["scrape_configs"]] == [
        j["job_name"] for j in rendered["scrape_configs"]
    ]
    assert committed["global"] == rendered["global"]


def test_a_job_that_names_no_service_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "monitoring").mkdir()
    (tmp_path / "monitoring" / "prometheus.yml").write_text(
        "scrape_configs:\n  - job_name: redis\n    static_configs: [{targets: ['redis:6379']}]\n"
    )
    with pytest.raises(ConfigError, match="'redis'"):
        render_prometheus_config(settings(tmp_path, tmp_path), tmp_path / "out.yml")


def test_alertmanager_sends_retrain_alerts_to_the_trainer_with_the_token_file(
    project_root: Path, tmp_path: Path
) -> None:
    from bottega.auth import ensure_trainer_token, load_trainer_token
    from bottega.stack.monitoring_config import render_alertmanager_config

    configured = BottegaSettings(  # type: ignore[call-arg]
        _env_file=None, project_root=project_root, home=tmp_path, trainer={"port": 18081}
    )
    token_path = ensure_trainer_token(configured)
    assert token_path.stat().st_mode & 0o777 == 0o600
    token = load_trainer_token(configured).get_secret_value()
    assert len(token) >= 32
    assert ensure_trainer_token(configured).read_text() == token  # generated once, then kept

    out = tmp_path / "alertmanager.yml"
    render_alertmanager_config(configured, out, token_path)
    text = out.read_text()
    assert token not in text
    config = yaml.safe_load(text)
    (route,) = config["route"]["routes"]
    assert route["receiver"] == "trainer" and route["matchers"] == ['retrain="true"']
    (trainer,) = [r for r in config["receivers"] if r["name"] == "trainer"]
    (hook,) = trainer["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:18081/webhook"
    assert hook["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": str(token_path),
    }


def test_a_configured_token_wins_and_reaches_child_processes(
    project_root: Path, tmp_path: Path
) -> None:
    from bottega.auth import ensure_trainer_token, load_trainer_token

    configured = BottegaSettings(  # type: ignore[call-arg]
        _env_file=None, project_root=project_root, home=tmp_path, trainer={"token": "t0ken"}
    )
    assert ensure_trainer_token(configured).read_text() == "t0ken"
    assert load_trainer_token(configured).get_secret_value() == "t0ken"
    assert "t0ken" not in repr(configured)
    assert configured.to_env()["BOTTEGA_TRAINER__TOKEN"] == "t0ken"
