"""Bottega: the SDK that every Bottega process imports.

It holds the contracts (settings, event schemas, errors) and the shared mechanisms (the Kafka
bus, the feature store, the local stack runner, the CLI). It never imports from ``services/`` or
``pipelines/``.
"""

# Importing Feast sets PROMETHEUS_MULTIPROC_DIR in os.environ (feast/metrics.py), and
# prometheus_client picks in-memory or file-backed metric values once, when it is first
# imported. Importing it here, before anything can import Feast, keeps every Bottega process on
# in-memory metrics; the stack runner strips those variables from what its children inherit.
import prometheus_client as _prometheus_client  # noqa: F401

__version__ = "0.1.0"
