"""The Docker-mode tests' probe inside the stack: run in the compose project's ``cli`` container
(the ml image, on the compose network, with the state volume), with the checkout's ``tests/``
mounted read-only and a folder of the test's mounted for what it writes:

    python -m tests.docker.inside replay --out /out/serving --minutes 60
    python -m tests.docker.inside count --out /out/serving
    python -m tests.docker.inside store --out /out/store.json

- ``replay`` plays ``baseline`` after the feature store's newest transaction with the fault tests'
  recording replay, writing its progress every half second and, at the end, its stats and the
  event_ids that the broker acknowledged, by topic;
- ``count`` finds those events again: on the topics, in the feature store's offline tables, and
  in the consumer groups' committed offsets;
- ``store`` describes the feature store: each offline table's rows, the newest transaction, and
  the online features of a few cards.

Kafka and the feature store's backends (Redis, Postgres) are not published on the host: the
counting has to happen here, through the same code the local fault tests use.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient

from bottega.replay.player import ReplayOptions
from bottega.settings import BottegaSettings, load_settings
from bottega.usecases.fraud.store import FraudFeatureStore
from tests.faults.counting import GROUPS, Replay, group_lag, read_topic, stored_counts


def write_json(path: Path, data: object) -> None:
    """Write ``data`` whole or not at all: the host reads the file while this writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def replay(settings: BottegaSettings, out: Path, minutes: float, speed: float) -> None:
    store = FraudFeatureStore(settings)
    newest = store.newest_transaction_time()
    assert newest is not None, "the store holds no history"
    player = Replay(
        settings,
        Path("scenarios") / "baseline.yaml",
        newest + timedelta(minutes=1),
        timedelta(minutes=minutes),
        ReplayOptions(speed=speed, concurrency=4, timeout_s=5.0),
    ).start()
    stats = player.stats
    while True:
        write_json(out / "progress.json", stats.to_dict())
        if not player.playing(wait_s=0.5):
            break
    stats = player.finish()
    result: dict[str, Any] = {
        "stats": stats.to_dict(),
        "acked": {topic: sorted(player.acked(topic)) for topic in ("transactions", "labels")},
        "failed": dict(player.publisher.failed),
    }
    write_json(out / "replay.json", result)
    write_json(out / "progress.json", {**stats.to_dict(), "finished": True})


def count(settings: BottegaSettings, out: Path) -> None:
    played = json.loads((out / "replay.json").read_text())
    transactions = set(played["acked"]["transactions"])
    labels = set(played["acked"]["labels"])
    store = FraudFeatureStore(settings)
    on_topic = {m["event_id"] for m in read_topic(settings.kafka, "transactions")}
    predictions = read_topic(
        settings.kafka, "predictions", keep=lambda m: m["transaction_id"] in transactions
    )
    stored = stored_counts(store.transactions, transactions)
    stored_labels = stored_counts(store.labels, labels)
    write_json(
        out / "count.json",
        {
            "transactions_on_topic": len(transactions & on_topic),
            "predictions": [
                {"event_id": p["event_id"], "transaction_id": p["transaction_id"], "arm": p["arm"]}
                for p in predictions
            ],
            "transactions_stored": len(stored),
            "transactions_stored_once": sum(1 for n in stored.values() if n == 1),
            "labels_stored": len(stored_labels),
            "labels_stored_once": sum(1 for n in stored_labels.values() if n == 1),
            "lag": group_lag(settings.kafka),
        },
    )


def describe_store(settings: BottegaSettings, out: Path) -> None:
    store = FraudFeatureStore(settings)
    tables = {
        "transactions": store.transactions.query("SELECT count(*) AS n FROM t").to_pylist(),
        "labels": store.labels.query("SELECT count(*) AS n FROM t").to_pylist(),
    }
    cards = store.transactions.query(
        "SELECT card_id FROM t GROUP BY card_id ORDER BY card_id LIMIT 5"
    ).to_pylist()
    online = store.online_card_rows([row["card_id"] for row in cards])
    write_json(
        out,
        {
            "rows": {name: rows[0]["n"] for name, rows in tables.items()},
            "newest_transaction": store.newest_transaction_time(),
            "online": online,
            "committed": committed_offsets(settings),
        },
    )


def committed_offsets(settings: BottegaSettings) -> dict[str, int]:
    """The offsets each of the stack's consumer groups has committed, summed over partitions."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        return {
            group: sum(o.offset for o in admin.list_group_offsets({group: None})[group].values())
            for group in GROUPS
        }
    finally:
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.docker.inside")
    parser.add_argument("command", choices=["replay", "count", "store"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=60.0)
    args = parser.parse_args()
    settings = load_settings(BottegaSettings)
    if args.command == "replay":
        replay(settings, args.out, args.minutes, args.speed)
    elif args.command == "count":
        count(settings, args.out)
    else:
        describe_store(settings, args.out)


if __name__ == "__main__":
    main()
