"""Models as the server holds them: loaded from MLflow by alias, cached on local disk.

A :class:`LoadedModel` is immutable. :class:`ModelSlots` holds the champion and the challenger
as plain attributes, so a swap is one reference assignment: a request reads ``slots.champion``
once and finishes on that model whatever is assigned meanwhile.

Every model loaded from the registry is also kept under the cache directory, with a pointer
file per alias. When MLflow is unreachable at start, the worker serves the cached champion and
says it is degraded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bottega.usecases.fraud.features.request import MODEL_FEATURES

log = logging.getLogger(__name__)

Source = Literal["registry", "cache"]


@dataclass(frozen=True)
class LoadedModel:
    """One registered version, ready to score."""

    name: str
    version: str
    alias: str
    source: Source
    device: str
    predict: Callable[[pd.DataFrame], Any]
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The model's own path for rows given as mappings, when it has one (FraudScorer does): it
    # skips building a DataFrame, which costs more than scoring one row.
    predict_records: Callable[[Sequence[Mapping[str, Any]]], Any] | None = None

    def score(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        """One probability per row of ``frame``."""
        return np.asarray(self.predict(frame), dtype=np.float64).ravel()

    def score_records(self, rows: Sequence[Mapping[str, Any]]) -> NDArray[np.float64]:
        """One probability per row; each row maps every model feature to its value."""
        if self.predict_records is not None:
            return np.asarray(self.predict_records(rows), dtype=np.float64).ravel()
        return self.score(pd.DataFrame.from_records(list(rows), columns=list(MODEL_FEATURES)))


class ModelSource(Protocol):
    """Where models come from: the registry's aliases and versions, and the local cache."""

    def aliases(self) -> dict[str, str]:
        """Alias to version; raises when the registry cannot be read."""

    def load(self, version: str, alias: str) -> LoadedModel:
        """Load ``version`` from the registry (through the cache) for ``alias``."""

    def load_cached(self, alias: str) -> LoadedModel | None:
        """The version last loaded for ``alias``, from disk alone; None when there is none."""


def limit_torch_threads(threads: int) -> None:
    """Cap torch's intra-op threads in this process (each worker is a process of its own)."""
    import torch

    torch.set_num_threads(threads)


def resolve_device(setting: str) -> str:
    """``cuda`` when asked for (or ``auto``) and torch sees a GPU; else ``cpu``."""
    if setting == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        log.warning("CUDA was asked for but torch sees no GPU: scoring on the CPU")
    return "cpu"


class MlflowModelSource:
    """:class:`ModelSource` over an MLflow server, with a disk cache under ``cache_dir``."""

    def __init__(self, tracking_uri: str, name: str, cache_dir: Path, device: str) -> None:
        import mlflow
        from mlflow import MlflowClient

        # ``models:/`` downloads resolve through the process's registry URI, which otherwise
        # defaults to a SQLite file in the working directory. A worker talks to one server.
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.name = name
        self.device = device
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        self.root = cache_dir / name

    def aliases(self) -> dict[str, str]:
        """Alias to version, as the registry holds them now."""
        model = self.client.get_registered_model(self.name)
        return {alias: str(version) for alias, version in (model.aliases or {}).items()}

    def load(self, version: str, alias: str) -> LoadedModel:
        """Download ``version`` unless it is cached, load it, and point ``alias`` at it."""
        path = self.root / version
        if not (path / "MLmodel").exists():
            self._download(version, path)
        model = self._load_path(path, version, alias, "registry")
        self._write_pointer(alias, version)
        return model

    def load_cached(self, alias: str) -> LoadedModel | None:
        """The cached version that ``alias`` last pointed at, or None."""
        pointer = self.root / f"{alias}.json"
        try:
            version = str(json.loads(pointer.read_text())["version"])
        except (OSError, ValueError, KeyError):
            return None
        path = self.root / version
        if not (path / "MLmodel").exists():
            return None
        return self._load_path(path, version, alias, "cache")

    def _download(self, version: str, path: Path) -> None:
        import mlflow

        # Into a private folder, then one rename: workers loading the same version at once
        # never see a half-written copy.
        staging = path.with_name(f".{version}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{self.name}/{version}",
                dst_path=str(staging),
                tracking_uri=self.tracking_uri,
            )
            try:
                staging.rename(path)
            except OSError:
                if not (path / "MLmodel").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _load_path(self, path: Path, version: str, alias: str, source: Source) -> LoadedModel:
        import mlflow

        python_model = mlflow.pyfunc.load_model(str(path)).unwrap_python_model()
        mover = getattr(python_model, "to", None)
        if callable(mover):
            mover(self.device)
        log.info(
            "model loaded",
            extra={"model": self.name, "version": version, "alias": alias, "source": source},
        )
        return LoadedModel(
            name=self.name,
            version=version,
            alias=alias,
            source=source,
            device=self.device,
            predict=lambda frame: python_model.predict(None, frame),
            predict_records=getattr(python_model, "score_records", None),
        )

    def _write_pointer(self, alias: str, version: str) -> None:
        pointer = self.root / f"{alias}.json"
        tmp = pointer.with_name(f".{alias}.{os.getpid()}.json")
        tmp.write_text(json.dumps({"version": version, "at": datetime.now(UTC).isoformat()}))
        tmp.replace(pointer)


@dataclass
class ModelSlots:
    """What a worker serves now. Each slot is replaced by one assignment, never mutated."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    registry_reachable: bool = False

    @property
    def degraded(self) -> bool:
        """Serving a cached champion while the registry cannot be read."""
        return self.champion is not None and not self.registry_reachable
