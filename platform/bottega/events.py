"""Event schemas: the contract between every producer and consumer on the bus.

Each event is a pydantic model, JSON on the wire, with an ``event_id`` (a UUID) and a UTC
``event_time``. Producers and consumers import these same classes. Each class names the topic it
belongs on and the field it is keyed by, so that every event of one card lands on one partition,
in order.

Unknown fields are rejected (``extra="forbid"``): a producer that drifts from the schema gets its
messages dead-lettered, not silently half-read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bottega.errors import SchemaError, describe_validation_error

# Feature values that a prediction logs: numbers, categories, or a missing value.
FeatureValue = float | int | str | bool | None


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Event(BaseModel):
    """Fields and behaviour common to every event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: ClassVar[str]
    key_field: ClassVar[str]

    event_id: UUID = Field(default_factory=uuid4, description="Unique id of this event.")
    event_time: datetime = Field(
        default_factory=utc_now, description="When the event happened, in UTC."
    )

    @field_validator("event_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("event_time must carry a timezone (UTC expected)")
        return value.astimezone(UTC)

    def key(self) -> bytes:
        """The partition key: every event of one entity lands on one partition, in order."""
        return str(getattr(self, self.key_field)).encode()

    def to_bytes(self) -> bytes:
        """The JSON wire format."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Any:
        """Parse the wire format, raising :class:`SchemaError` that names the bad fields."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise SchemaError(f"{cls.__name__}: {describe_validation_error(exc)}") from exc


class Transaction(Event):
    """A card payment, as the payment system sends it for scoring."""

    topic: ClassVar[str] = "transactions"
    key_field: ClassVar[str] = "card_id"

    card_id: str = Field(min_length=1, description="The card; the feature store's entity key.")
    merchant_id: str = Field(min_length=1, description="The merchant; an entity key.")
    amount: float = Field(gt=0, description="Amount in the transaction's currency.")
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    merchant_category: str = Field(min_length=1, description="Merchant category, e.g. grocery.")
    country: str = Field(
        min_length=2, max_length=2, description="ISO 3166 alpha-2 country where the card is used."
    )
    card_country: str = Field(
        min_length=2,
        max_length=2,
        description="ISO 3166 alpha-2 country that issued the card (from its BIN).",
    )
    channel: Literal["card_present", "online"] = "card_present"
    device_id: str | None = Field(default=None, description="Device fingerprint, when known.")


class Label(Event):
    """The ground truth for a transaction, which arrives late (a chargeback) or never."""

    topic: ClassVar[str] = "labels"
    key_field: ClassVar[str] = "card_id"

    transaction_id: UUID = Field(description="event_id of the labelled transaction.")
    card_id: str = Field(min_length=1)
    is_fraud: bool
    transaction_time: datetime = Field(description="event_time of the labelled transaction.")

    @field_validator("transaction_time")
    @classmethod
    def _utc_transaction_time(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("transaction_time must carry a timezone (UTC expected)")
        return value.astimezone(UTC)


class Prediction(Event):
    """One score from the model server, with the exact feature values it used."""

    topic: ClassVar[str] = "predictions"
    key_field: ClassVar[str] = "card_id"

    transaction_id: UUID = Field(description="event_id of the scored transaction.")
    card_id: str = Field(min_length=1)
    model_name: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    arm: Literal["champion", "challenger", "shadow"] = "champion"
    score: float = Field(ge=0.0, le=1.0)
    threshold: float = Field(ge=0.0, le=1.0)
    decision: bool = Field(description="True when the score reached the threshold.")
    features: dict[str, FeatureValue] = Field(default_factory=dict)
    latency_ms: float = Field(ge=0.0)


class ModelEvent(Event):
    """A change in the model registry: a version registered, promoted, rejected or rolled back."""

    topic: ClassVar[str] = "model-events"
    key_field: ClassVar[str] = "model_name"

    model_name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    action: Literal["registered", "promoted", "rejected", "rolled_back"]
    alias: str | None = Field(default=None, description="The alias moved, if any.")
    previous_version: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    reason: str = ""


EVENT_TYPES: tuple[type[Event], ...] = (Transaction, Label, Prediction, ModelEvent)
TOPICS: tuple[str, ...] = tuple(event.topic for event in EVENT_TYPES)


def dlq_topic(topic: str) -> str:
    """The dead-letter topic for ``topic``."""
    return f"{topic}.dlq"


def all_topics() -> list[str]:
    """Every topic Bottega uses, dead-letter topics included."""
    return [name for topic in TOPICS for name in (topic, dlq_topic(topic))]
