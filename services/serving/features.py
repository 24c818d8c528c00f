"""Online features: the card's and the merchant's rows, read from Feast in one lookup.

One :class:`OnlineFeatures` per worker process holds one warm ``FeatureStore`` (building one
costs a registry read; a lookup then costs a fraction of a millisecond per entity). An entity the
store has never seen comes back as None, and the request-time function fills in the documented
defaults (:data:`~bottega.usecases.fraud.features.request.CARD_DEFAULTS`,
:data:`~bottega.usecases.fraud.features.request.MERCHANT_DEFAULTS`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bottega.events import Transaction


@dataclass(frozen=True)
class EntityRows:
    """One transaction's stored rows; None where the store had no row for the entity."""

    card: Mapping[str, Any] | None
    merchant: Mapping[str, Any] | None

    @property
    def missing(self) -> list[str]:
        """The entities that took defaults."""
        return [name for name, row in (("card", self.card), ("merchant", self.merchant)) if not row]


class FeatureReader(Protocol):
    """What the predictor needs from the online store."""

    def read(self, txns: Sequence[Transaction]) -> list[EntityRows]:
        """The stored rows for each transaction, in order."""


class OnlineFeatures:
    """:class:`FeatureReader` over a Feast store and the fraud feature service."""

    def __init__(
        self,
        store: Any,
        card: tuple[str, Sequence[str]],
        merchant: tuple[str, Sequence[str]],
    ) -> None:
        """``card`` and ``merchant`` are (feature view, feature names)."""
        self._store = store
        self._card = tuple(card[1])
        self._merchant = tuple(merchant[1])
        self._refs = [f"{card[0]}:{n}" for n in self._card] + [
            f"{merchant[0]}:{n}" for n in self._merchant
        ]
        # Feast's SQLite store shares one connection between threads: serialize lookups.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> OnlineFeatures:
        """A warm reader for ``settings``' feature store."""
        from bottega.features.store import build_store
        from bottega.usecases.fraud.aggregates import CARD_FEATURES
        from bottega.usecases.fraud.features.definitions import CARD_VIEW, MERCHANT_VIEW
        from bottega.usecases.fraud.training import MERCHANT_FEATURE_COLUMNS

        store = build_store(settings)
        reader = cls(store, (CARD_VIEW, CARD_FEATURES), (MERCHANT_VIEW, MERCHANT_FEATURE_COLUMNS))
        reader.warm()
        return reader

    def warm(self) -> None:
        """Load the registry and open the online store before the first request."""
        self._lookup([{"card_id": "__warmup__", "merchant_id": "__warmup__"}])

    def _lookup(self, rows: list[dict[str, str]]) -> dict[str, list[Any]]:
        with self._lock:
            response = self._store.get_online_features(features=self._refs, entity_rows=rows)
            values: dict[str, list[Any]] = response.to_dict()
        return values

    def read(self, txns: Sequence[Transaction]) -> list[EntityRows]:
        """The card's and merchant's rows for each transaction, in one lookup."""
        values = self._lookup([{"card_id": t.card_id, "merchant_id": t.merchant_id} for t in txns])
        out = []
        for i in range(len(txns)):
            card = {name: values[name][i] for name in self._card}
            merchant = {name: values[name][i] for name in self._merchant}
            out.append(
                EntityRows(
                    card=card if any(v is not None for v in card.values()) else None,
                    merchant=merchant if any(v is not None for v in merchant.values()) else None,
                )
            )
        return out
