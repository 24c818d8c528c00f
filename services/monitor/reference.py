"""The champion's reference sample, read from MLflow.

Training logs ``reference/reference.parquet`` on the run of every registered version: a sample
of its training rows (the model's features, ``is_fraud`` and the model's ``score``). The monitor
compares each window with the sample of whichever version holds the ``champion`` alias now.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd

from bottega.registry import CHAMPION, MlflowRegistry

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "reference/reference.parquet"


@dataclass(frozen=True)
class Reference:
    """A champion version's reference sample and its offline holdout metrics."""

    model_name: str
    version: str
    frame: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)


class ReferenceSource(Protocol):
    """Where the champion and its reference sample come from."""

    def champion_version(self) -> str | None:
        """The version that holds the champion alias now, or None."""

    def load(self, version: str) -> Reference:
        """The reference sample of ``version``."""


class MlflowReferenceSource:
    """:class:`ReferenceSource` over the MLflow registry and the version's run artifacts."""

    def __init__(self, tracking_uri: str, model_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.registry = MlflowRegistry(tracking_uri)

    def champion_version(self) -> str | None:
        """The champion's version, or None when there is none yet."""
        champion = self.registry.by_alias(self.model_name, CHAMPION)
        return champion.version if champion is not None else None

    def load(self, version: str) -> Reference:
        """Download the version's reference sample."""
        from mlflow.artifacts import download_artifacts

        found = self.registry.get(self.model_name, version)
        with tempfile.TemporaryDirectory() as tmp:
            path = download_artifacts(
                run_id=found.run_id,
                artifact_path=REFERENCE_ARTIFACT,
                dst_path=tmp,
                tracking_uri=self.tracking_uri,
            )
            frame = pd.read_parquet(Path(path))
        metrics = {
            k.removeprefix("holdout_"): v
            for k, v in found.metrics.items()
            if k.startswith("holdout_")
        }
        log.info("loaded a reference sample", extra={"version": version, "rows": len(frame)})
        return Reference(self.model_name, version, frame, metrics)
