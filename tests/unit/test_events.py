from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from bottega.errors import SchemaError
from bottega.events import (
    EVENT_TYPES,
    Label,
    ModelEvent,
    Prediction,
    Transaction,
    all_topics,
    dlq_topic,
)


def a_transaction(**overrides: object) -> Transaction:
    fields: dict[str, object] = {
        "card_id": "card-1",
        "merchant_id": "m-7",
        "amount": 42.5,
        "merchant_category": "grocery",
        "country": "FR",
        "card_country": "FR",
    }
    fields.update(overrides)
    return Transaction.model_validate(fields)


def test_round_trip_keeps_every_field() -> None:
    txn = a_transaction(device_id="dev-9", channel="online")
    assert Transaction.from_bytes(txn.to_bytes()) == txn


def test_every_event_has_a_uuid_and_a_utc_time() -> None:
    txn = a_transaction()
    assert txn.event_id.version == 4
    assert txn.event_time.tzinfo is not None
    assert txn.event_time.utcoffset() == timedelta(0)


def test_event_time_is_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    txn = a_transaction(event_time=datetime(2026, 1, 1, 13, 0, tzinfo=paris))
    assert txn.event_time == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert txn.event_time.tzinfo == UTC


def test_a_naive_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone"):
        a_transaction(event_time=datetime(2026, 1, 1, 12, 0))


def test_from_bytes_names_the_bad_field() -> None:
    raw = a_transaction().model_dump(mode="json")
    raw["amount"] = -3
    with pytest.raises(SchemaError, match="amount"):
        Transaction.from_bytes(__import__("json").dumps(raw).encode())


def test_unknown_fields_are_rejected() -> None:
    raw = a_transaction().model_dump(mode="json")
    raw["surprise"] = 1
    with pytest.raises(SchemaError, match="surprise"):
        Transaction.from_bytes(__import__("json").dumps(raw).encode())


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00garbage", b"", b"{", b"[]", b"null"])
def test_garbage_raises_schema_error(raw: bytes) -> None:
    with pytest.raises(SchemaError):
        Transaction.from_bytes(raw)


def test_keys_put_one_card_on_one_partition() -> None:
    txn = a_transaction(card_id="card-77")
    label = Label(
        transaction_id=txn.event_id,
        card_id="card-77",
        is_fraud=True,
        transaction_time=txn.event_time,
    )
    prediction = Prediction(
        transaction_id=txn.event_id,
        card_id="card-77",
        model_name="fraud-detector",
        model_version="3",
        score=0.9,
        threshold=0.5,
        decision=True,
        latency_ms=3.1,
        features={"amount": 42.5, "country": "FR", "seconds_since_last": None},
    )
    assert txn.key() == label.key() == prediction.key() == b"card-77"
    event = ModelEvent(
        model_name="fraud-detector",
        version="3",
        action="promoted",
        alias="champion",
        previous_version="2",
        metrics={"pr_auc": 0.61},
    )
    assert event.key() == b"fraud-detector"


def test_prediction_score_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="score"):
        Prediction(
            transaction_id=uuid4(),
            card_id="c",
            model_name="m",
            model_version="1",
            score=1.5,
            threshold=0.5,
            decision=True,
            latency_ms=1.0,
        )


def test_topics_match_the_design() -> None:
    assert [e.topic for e in EVENT_TYPES] == [
        "transactions",
        "labels",
        "predictions",
        "model-events",
    ]
    assert dlq_topic("labels") == "labels.dlq"
    assert len(all_topics()) == 8
    assert "model-events.dlq" in all_topics()
