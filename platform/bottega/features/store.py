"""Build a Feast ``FeatureStore`` from settings, with no feature_store.yaml and no repo folder.

``feast apply`` imports every ``.py`` in a repo folder; Bottega instead builds its ``RepoConfig``
in code and applies the use case's declared objects, so what is applied is exactly what the code
declares. Offline data lives in Parquet files read through Feast's DuckDB offline store (the
``file`` offline store silently drops rows); online data in SQLite, or Redis when settings say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feast import FeatureStore, RepoConfig
from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

from bottega.settings import BottegaSettings


def repo_config(settings: BottegaSettings) -> RepoConfig:
    """The Feast repo configuration for ``settings``."""
    repo = settings.feature_repo_dir
    repo.mkdir(parents=True, exist_ok=True)
    online: SqliteOnlineStoreConfig | RedisOnlineStoreConfig
    if settings.feast.online_store == "redis":
        online = RedisOnlineStoreConfig(connection_string=settings.feast.redis_connection_string)
    else:
        online = SqliteOnlineStoreConfig(path=str(repo / "online.db"))
    registry: str | dict[str, Any] = str(repo / "registry.db")
    if settings.feast.registry:
        # Docker mode: one registry in Postgres for every container. A connection that Postgres
        # dropped (a restart) is replaced, not handed to a query.
        registry = {
            "registry_type": "sql",
            "path": settings.feast.registry,
            "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
        }
    return RepoConfig(
        project=settings.feast.project,
        registry=registry,
        provider="local",
        online_store=online,
        offline_store=DuckDBOfflineStoreConfig(),
        entity_key_serialization_version=3,
        repo_path=repo,
    )


def build_store(settings: BottegaSettings) -> FeatureStore:
    """A Feast store for ``settings``. Build one per process and keep it: it is warm."""
    return FeatureStore(config=repo_config(settings))


def offline_dir(settings: BottegaSettings) -> Path:
    """Where the offline tables' Parquet files live."""
    return settings.feature_repo_dir / "offline"
