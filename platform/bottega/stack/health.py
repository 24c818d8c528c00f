"""Real health checks: each asks the service to do something, not just to accept a socket."""

from __future__ import annotations

import logging
import socket
from typing import Any

import httpx
from kafka import KafkaAdminClient

from bottega.settings import KafkaSettings

log = logging.getLogger(__name__)


def http_ok(url: str, *, timeout_s: float = 2.0) -> bool:
    """True when ``GET url`` answers 2xx."""
    try:
        response = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return response.is_success


def http_json(url: str, *, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The JSON object that ``GET url`` answers with 2xx, or None."""
    try:
        response = httpx.get(url, timeout=timeout_s)
        body = response.json() if response.is_success else None
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def kafka_metadata_ok(kafka: KafkaSettings, *, timeout_ms: int = 3000) -> bool:
    """True when the broker answers a metadata request and lists at least one live broker."""
    if not port_open(kafka.host, kafka.port):
        return False
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id="bottega-health",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
    except Exception:  # kafka-python raises several unrelated types while a broker starts
        return False
    try:
        cluster = admin.describe_cluster()
    except Exception:
        return False
    finally:
        admin.close()
    brokers = [b for b in cluster.get("brokers", []) if not b.get("is_fenced")]
    return bool(brokers)


def port_open(host: str, port: int, *, timeout_s: float = 0.5) -> bool:
    """True when something accepts a TCP connection on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    """True when this process could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
