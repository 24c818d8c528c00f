"""Online features: the card's and the merchant's rows, read from Feast, one read per view.

One :class:`OnlineFeatures` per worker process holds one warm ``FeatureStore`` and its online
store (building one costs a registry read; a lookup then costs about 70 us). An entity the
store has never seen comes back as None, and the request-time function fills in the documented
defaults (:data:`~bottega.usecases.fraud.features.request.CARD_DEFAULTS`,
:data:`~bottega.usecases.fraud.features.request.MERCHANT_DEFAULTS`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
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
    """:class:`FeatureReader` over a Feast store: one online read per feature view.

    It reads through the store's provider (``Provider.online_read``), the call that
    ``FeatureStore.get_online_features`` makes for each feature view, with the views resolved
    from the registry once, at warm-up. ``get_online_features`` resolves the feature
    references against the registry and builds a columnar response on every call: 250 us a
    request on this machine, against 70 us for the same two reads (``docs/serving.md``). The
    values are the same: the same rows, scalars read off the protobuf as Feast reads them, and
    every other type decoded by Feast's own ``feast_value_type_to_python_type``.
    A view applied anew (``feast apply``) is read once the server restarts.
    """

    def __init__(
        self,
        store: Any,
        card: tuple[str, Sequence[str]],
        merchant: tuple[str, Sequence[str]],
    ) -> None:
        """``card`` and ``merchant`` are (feature view, feature names)."""
        self._store = store
        self._card = _View(card[0], tuple(card[1]))
        self._merchant = _View(merchant[0], tuple(merchant[1]))
        self._provider: Any = None
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
        """Resolve the views, open the online store, and read once before the first request."""
        from feast.infra.provider import get_provider

        for view in (self._card, self._merchant):
            view.resolve(self._store)
        self._provider = get_provider(self._store.config)
        for view in (self._card, self._merchant):
            view.read(self._provider, self._store.config, ["__warmup__"])

    def read(self, txns: Sequence[Transaction]) -> list[EntityRows]:
        """The card's and merchant's rows for each transaction: one read per view."""
        if self._provider is None:
            self.warm()
        with self._lock:
            cards = self._card.read(self._provider, self._store.config, [t.card_id for t in txns])
            merchants = self._merchant.read(
                self._provider, self._store.config, [t.merchant_id for t in txns]
            )
        return [EntityRows(card=c, merchant=m) for c, m in zip(cards, merchants, strict=True)]


# The value fields that Feast decodes as themselves: ``getattr`` gives what
# ``feast_value_type_to_python_type`` gives, without its chain of checks. Any other field (lists,
# maps, timestamps, JSON) goes through Feast's function.
_SCALAR_FIELDS = frozenset(
    {"string_val", "int64_val", "int32_val", "double_val", "float_val", "bool_val", "bytes_val"}
)


@dataclass
class _View:
    """One feature view's online rows, by its single entity's key."""

    name: str
    features: tuple[str, ...]
    view: Any = None
    join_key: str = ""
    keys: Callable[[list[str]], list[Any]] | None = None
    decode: Callable[[Any], Any] | None = None

    def resolve(self, store: Any) -> None:
        """Find the view in the registry, and bind the key and value codecs for its types."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
        from feast.value_type import ValueType

        self.view = store.get_feature_view(self.name)
        if len(self.view.join_keys) != 1:
            raise ValueError(f"feature view {self.name} has more than one entity")
        join_key = self.join_key = self.view.join_keys[0]
        key_type = self.view.entity_columns[0].dtype.to_value_type()
        # A string key is built directly, as python_values_to_proto_values builds it: under
        # cProfile, a fifth of a lookup's time went to that function's type inference.
        direct = key_type == ValueType.STRING

        def keys(ids: list[str]) -> list[Any]:
            values = (
                [Value(string_val=value) for value in ids]
                if direct
                else python_values_to_proto_values(ids, key_type)
            )
            return [EntityKey(join_keys=[join_key], entity_values=[value]) for value in values]

        def decode(value: Any) -> Any:
            kind = value.WhichOneof("val")
            if kind in _SCALAR_FIELDS:
                return getattr(value, kind)
            return feast_value_type_to_python_type(value)

        self.keys, self.decode = keys, decode

    def read(self, provider: Any, config: Any, ids: list[str]) -> list[dict[str, Any] | None]:
        """Each id's features; None for an id the store has no row for."""
        assert self.keys is not None and self.decode is not None, "resolve() first"
        decode = self.decode
        rows = provider.online_read(
            config=config,
            table=self.view,
            entity_keys=self.keys(ids),
            # A list of its own each call: Feast's Redis store appends its timestamp key to it.
            requested_features=list(self.features),
        )
        out: list[dict[str, Any] | None] = []
        for _, values in rows:
            row = (
                {name: decode(values[name]) if name in values else None for name in self.features}
                if values
                else {}
            )
            out.append(row if any(v is not None for v in row.values()) else None)
        return out
