"""The Kafka bus: a producer, a consumer-group helper, topic creation and dead-lettering.

The consumer follows the shape of Feast's ``StreamProcessor``: read a batch, hand it to the
handler, and commit the batch's offsets only after the handler returns. A handler that raises
gets the same batch again, after a backoff, so delivery is at least once and nothing that was
acknowledged is lost. A message that does not parse as its schema goes to ``<topic>.dlq`` with the
reason in its headers, and the consumer carries on.
"""

from bottega.bus.admin import create_topics
from bottega.bus.consumer import (
    CONSUMER_DEFAULTS,
    BatchHandler,
    Consumer,
    Envelope,
    PollResult,
)
from bottega.bus.metrics import BusMetrics
from bottega.bus.producer import PRODUCER_DEFAULTS, Producer

__all__ = [
    "CONSUMER_DEFAULTS",
    "PRODUCER_DEFAULTS",
    "BatchHandler",
    "BusMetrics",
    "Consumer",
    "Envelope",
    "PollResult",
    "Producer",
    "create_topics",
]
