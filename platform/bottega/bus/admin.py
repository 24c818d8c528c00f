"""Topic administration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from bottega.bus.producer import connection_options
from bottega.settings import KafkaSettings


def create_topics(
    kafka: KafkaSettings, topics: Iterable[str], *, partitions: int | None = None
) -> list[str]:
    """Create the topics that do not exist yet; return the names it created.

    Dead-letter topics get one partition: they are read by people, in order, not by a group.
    """
    admin = KafkaAdminClient(
        **connection_options(kafka, "bottega-admin"), request_timeout_ms=kafka.request_timeout_ms
    )
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name=name,
                num_partitions=1 if name.endswith(".dlq") else (partitions or kafka.partitions),
                replication_factor=kafka.replication_factor,
            )
            for name in dict.fromkeys(topics)
            if name not in existing
        ]
        if not wanted:
            return []
        # Another process may create one of them between our list and our create.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(wanted, timeout_ms=kafka.request_timeout_ms)
        admin.wait_for_topics([t.name for t in wanted], timeout_ms=kafka.request_timeout_ms)
        return [t.name for t in wanted]
    finally:
        admin.close()
