"""``training_set``: the platform's entry point for point-in-time-correct training frames."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from bottega.errors import ConfigError
from bottega.settings import BottegaSettings, load_settings

if TYPE_CHECKING:
    import pandas as pd

    from bottega.usecases.fraud.store import FraudFeatureStore

USECASES = ("fraud",)


def training_set(
    start: datetime,
    end: datetime,
    *,
    usecase: str = "fraud",
    settings: BottegaSettings | None = None,
    store: FraudFeatureStore | None = None,
    labels_as_of: datetime | None = None,
    labelled_only: bool = True,
) -> pd.DataFrame:
    """Labelled transactions with event time in ``[start, end)`` and their features, each as it
    stood strictly before the transaction. See :func:`fraud_training_set`."""
    if usecase not in USECASES:
        raise ConfigError(f"unknown use case {usecase!r}", hint=f"one of {', '.join(USECASES)}")
    from bottega.usecases.fraud.store import FraudFeatureStore
    from bottega.usecases.fraud.training import fraud_training_set

    fs = store or FraudFeatureStore(settings or load_settings(BottegaSettings))
    return fraud_training_set(
        fs, start, end, labels_as_of=labels_as_of, labelled_only=labelled_only
    )
