"""The Redis online store, when settings point at one: a real redis-server on a free port."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bottega.events import Transaction
from bottega.settings import BottegaSettings
from bottega.stack.health import port_open
from bottega.usecases.fraud.aggregates import CardAggregator
from bottega.usecases.fraud.store import FraudFeatureStore, aggregate_batch
from bottega.usecases.fraud.tables import BACKFILL
from services.serving.features import OnlineFeatures

from .conftest import free_ports, wait_for


@pytest.fixture()
def redis_port(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: apt-get install -y redis-server"
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout_s=30, what="redis-server")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rows_pushed_online_are_read_back_from_redis(tmp_path: Path, redis_port: int) -> None:
    settings = BottegaSettings(  # type: ignore[call-arg]
        _env_file=None,
        home=tmp_path / "home",
        feast={"online_store": "redis", "redis_connection_string": f"127.0.0.1:{redis_port},db=0"},
    )
    fs = FraudFeatureStore(settings)
    fs.apply()
    start = datetime(2026, 5, 1, tzinfo=UTC)
    events = [
        Transaction(
            event_time=start + timedelta(minutes=i),
            card_id=f"card-{i % 3}",
            merchant_id=f"m-{i % 5}",
            amount=10.0 + i,
            merchant_category="grocery",
            country="FR",
            card_country="FR",
            device_id="dev-1",
        )
        for i in range(30)
    ]
    result = aggregate_batch(CardAggregator(), [(t, BACKFILL) for t in events])
    fs.write_batch(result)
    assert fs.push_online(result.rows) == 3
    newest = {row.card_id: row for row in result.rows}
    got = fs.online_card_rows(["card-0", "card-1", "card-2", "card-unknown"])
    for card_id, online in zip(["card-0", "card-1", "card-2"], got, strict=False):
        assert online["txn_count_1h"] == newest[card_id].txn_count_1h
        assert online["amount_sum_24h"] == pytest.approx(newest[card_id].amount_sum_24h)
        assert online["last_device_id"] == "dev-1"
    assert got[3]["txn_count_1h"] is None
    assert not (settings.feature_repo_dir / "online.db").exists(), "nothing went to SQLite"

    # The model server's own reader (Docker mode's path), twice: Feast's Redis store appends
    # to the list of features it is given, which once broke the second read and the first.
    reader = OnlineFeatures.from_settings(settings)
    for _ in range(2):
        rows = reader.read(events[:3])
        assert [r.card is not None for r in rows] == [True, True, True]
        card = rows[0].card
        assert card is not None and card["txn_count_1h"] == newest["card-0"].txn_count_1h
