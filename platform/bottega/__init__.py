"""Bottega: the SDK that every Bottega process imports.

It holds the contracts (settings, event schemas, errors) and the shared mechanisms (the Kafka
bus, the local stack runner, the CLI). It never imports from ``services/`` or ``pipelines/``.
"""

__version__ = "0.1.0"
