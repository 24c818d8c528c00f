"""Feast's registry: a file under the state directory by default, a SQL database when settings
name one (Docker mode names Postgres; SQLite stands in for it here)."""

from __future__ import annotations

from pathlib import Path

from bottega.features.store import build_store, repo_config
from bottega.settings import BottegaSettings
from bottega.usecases.fraud.store import FraudFeatureStore


def test_the_default_registry_is_a_file_in_the_state_directory(tmp_path: Path) -> None:
    settings = BottegaSettings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    config = repo_config(settings)
    assert config.registry.registry_type == "file"
    assert config.registry.path == str(tmp_path / "feast" / "registry.db")


def test_a_sql_registry_holds_what_apply_registered(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    settings = BottegaSettings(  # type: ignore[call-arg]
        _env_file=None, home=tmp_path / "home", feast={"registry": url}
    )
    config = repo_config(settings)
    assert (config.registry.registry_type, config.registry.path) == ("sql", url)
    FraudFeatureStore(settings).apply()
    # A second store, as another container builds it, reads the same definitions.
    views = {view.name for view in build_store(settings).list_feature_views()}
    assert {"card_aggregates", "merchant_stats"} <= views
    assert not (tmp_path / "home" / "feast" / "registry.db").exists()
