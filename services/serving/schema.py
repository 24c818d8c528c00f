"""The HTTP contract: what ``/predict`` accepts and what it answers.

A request is one flat JSON transaction, validated more strictly than the bus's
:class:`~bottega.events.Transaction` (finite positive amounts, a supported currency, upper-case
country codes, an event time in a sane range), so that anything the model could choke on is a
422 naming the field, never a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bottega.events import FeatureValue, Transaction

# The fraud model was trained on euro amounts and the server converts nothing: an amount in
# another currency would be scored as if it were euros, so it is refused instead.
SUPPORTED_CURRENCIES = ("EUR",)
Currency = Literal["EUR"]
MAX_AMOUNT = 1_000_000_000.0
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class PredictRequest(BaseModel):
    """One card transaction to score, as a flat JSON object."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    event_id: UUID = Field(default_factory=uuid4, description="The transaction's id.")
    event_time: datetime | None = Field(
        default=None, description="When it happened, with a timezone; default: now."
    )
    card_id: str = Field(min_length=1, max_length=128)
    merchant_id: str = Field(min_length=1, max_length=128)
    amount: float = Field(gt=0, lt=MAX_AMOUNT, allow_inf_nan=False)
    currency: Currency = "EUR"
    merchant_category: str = Field(min_length=1, max_length=64)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2, where used.")
    card_country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2 of issue.")
    channel: Literal["card_present", "online"] = "card_present"
    device_id: str | None = Field(default=None, max_length=128)

    @field_validator("event_time")
    @classmethod
    def _aware_and_sane(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("event_time must carry a timezone")
        # Compare before converting: a year-1 time with a positive offset overflows in UTC.
        if not (
            EARLIEST.replace(tzinfo=None) < value.replace(tzinfo=None) < LATEST.replace(tzinfo=None)
        ):
            raise ValueError("event_time must be between 2000 and 2100")
        return value.astimezone(UTC)

    def to_transaction(self, now: datetime) -> Transaction:
        """The bus's transaction for this request; ``now`` stands in for a missing time."""
        return Transaction.model_construct(
            event_id=self.event_id,
            event_time=self.event_time or now,
            card_id=self.card_id,
            merchant_id=self.merchant_id,
            amount=self.amount,
            currency=self.currency,
            merchant_category=self.merchant_category,
            country=self.country,
            card_country=self.card_country,
            channel=self.channel,
            device_id=self.device_id,
        )


class BatchRequest(BaseModel):
    """Several transactions, scored together."""

    model_config = ConfigDict(extra="forbid")

    transactions: list[PredictRequest] = Field(min_length=1)


class Latency(BaseModel):
    """Where the time went, in milliseconds."""

    features_ms: float
    model_ms: float
    total_ms: float


class PredictResponse(BaseModel):
    """The champion's answer for one transaction."""

    event_id: UUID
    score: float = Field(ge=0.0, le=1.0)
    decision: Literal["approve", "decline"]
    threshold: float
    model_name: str
    model_version: str
    missing: list[str] = Field(
        default_factory=list, description="Entities the store did not know (defaults used)."
    )
    latency: Latency


class BatchResponse(BaseModel):
    """One answer per transaction, in request order."""

    predictions: list[PredictResponse]


class ServedModel(BaseModel):
    """One model a worker holds."""

    name: str
    version: str
    alias: str
    source: Literal["registry", "cache"]
    loaded_at: datetime


class ModelReport(BaseModel):
    """``GET /model``: what this worker serves, on which device, and in what state."""

    state: Literal["serving", "degraded", "no_model"]
    device: str
    champion: ServedModel | None
    challenger: ServedModel | None
    aliases: dict[str, str] = Field(description="Alias to version, as last read from MLflow.")
    registry_reachable: bool
    worker_pid: int


class FieldError(BaseModel):
    """One invalid field."""

    field: str
    message: str


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx body."""

    error: str
    fields: list[FieldError] = Field(default_factory=list)


FeatureRow = dict[str, FeatureValue]
