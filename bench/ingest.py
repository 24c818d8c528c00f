"""The ``ingest`` benchmark: transactions from Kafka into Feast, against Feast's bare push.

Both sides land the same card-feature rows in a fresh Feast store (SQLite online, DuckDB
offline), each repetition in a fresh temporary BOTTEGA home:

- **ingest**: the real path. N transactions are published to a fresh topic first, untimed. Then
  a ``bottega.bus.Consumer`` with the ingest's own handler, ``TransactionSink``, and the ingest's
  default ``StreamOptions`` (``max_batch``, ``linger_ms``) consumes the topic in a fresh group:
  parse, aggregate each card's windows, append the card rows and the raw log offline, push each
  card's newest row online, commit. Timed from the first poll (the group join included) until
  all N events are written offline and online and committed. ``events_per_s`` = N / that time.
- **bare**: ``FeatureStore.push(CARD_PUSH_SOURCE, rows, to=ONLINE_AND_OFFLINE)`` of the very
  card rows the ingest writes for those N events (the same aggregation run over the same events),
  in chunks of ``max_batch`` rows, into a store whose offline file starts empty. Feast's DuckDB
  offline push appends to a single Parquet file, so the bare store declares the card view's
  ``FileSource`` over one file rather than the ingest's glob. Rows are prepared as DataFrames
  beforehand; only the pushes are timed. ``bare_push_rows_per_s`` = N / that time.

The ratio ``vs_bare_push`` is ingest / bare. As context, each round also times Feast's
online-only push of the same rows (``bare_online_push_rows_per_s``), and the ingest's time is
split by stage, in microseconds per event: consume (poll, parse, commit: the whole time outside
the handler), aggregate, offline write and online push (from the ingest's own stage histogram),
and what else the handler spends. In each repetition the stages add up to 1e6 / its rate; the
record holds each stage's median. On a shared machine wall time is noisy, so both sides are also
rated per second of this process's CPU time (``*_per_cpu_s``; the ingest's excludes the
broker's, which runs in its own process).

``--max-batch`` changes the micro-batch size of both sides, to see what a larger batch buys: the
online push writes each card's newest row per batch, so larger batches write fewer rows.

Bare and ingest repetitions alternate (bare, ingest, ingest, bare, ...) after a warm-up round
that is discarded. Each repetition checks what it wrote: N rows offline on both sides, and on
the ingest side N raw-log rows and online values equal to the aggregation's for a sample of
cards.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from prometheus_client import CollectorRegistry, values

from bench.broker import private_broker
from bench.harness import (
    Benchmark,
    BenchmarkError,
    Measurement,
    median,
    non_negative_int,
    positive_int,
)
from bottega.bus import BusMetrics, Consumer, Envelope, Producer, create_topics
from bottega.events import Transaction
from bottega.settings import BottegaSettings, KafkaSettings
from bottega.usecases.fraud.aggregates import CardAggregator, CardRow
from bottega.usecases.fraud.features.definitions import CARD_PUSH_SOURCE, fraud_feature_repo
from bottega.usecases.fraud.scenario import load_scenario
from bottega.usecases.fraud.simulator import Simulator
from bottega.usecases.fraud.store import FraudFeatureStore, aggregate_batch
from bottega.usecases.fraud.tables import BACKFILL, CARD_FEATURES, card_features_table
from services.ingest.metrics import IngestMetrics
from services.ingest.service import TransactionSink
from services.ingest.settings import StreamOptions

log = logging.getLogger(__name__)

# A consumer that gets nothing for this long has lost messages: fail, do not hang.
STALL_TIMEOUT_S = 60.0
POLL_TIMEOUT_MS = 1000
# Cards whose online values each ingest repetition checks against the aggregation.
CHECKED_CARDS = 50
# The ingest's stages, as its batch histogram labels them.
STAGES = ("aggregate", "offline", "online")

# The workload: the baseline scenario's own traffic, so the benchmark ingests what the platform
# does (its card population, category mix, devices and fraud patterns), not a stand-in.
SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "baseline.yaml"


@dataclass(frozen=True)
class IngestSample:
    """One ingest repetition: its rate and where its time went, in seconds."""

    events_per_s: float
    events_per_cpu_s: float
    total_s: float
    handler_s: float
    stage_s: dict[str, float]
    batches: int


@dataclass(frozen=True)
class BareSample:
    """One bare repetition: Feast's push rate, online and offline, and online only."""

    push_rows_per_s: float
    push_rows_per_cpu_s: float
    online_push_rows_per_s: float


def make_transactions(count: int) -> list[Transaction]:
    """The first ``count`` transactions of the baseline scenario, the same on every run."""
    events: list[Transaction] = []
    for event in Simulator(load_scenario(SCENARIO), until=None).events():
        events.append(event.transaction)
        if len(events) == count:
            return events
    raise BenchmarkError(f"the baseline scenario has fewer than {count} transactions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ingest benchmark's options."""
    parser.add_argument(
        "--events", type=positive_int, default=50_000, help="transactions per repetition"
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="measured repetitions a side"
    )
    parser.add_argument(
        "--warmup", type=non_negative_int, default=1, help="discarded repetitions a side, first"
    )
    parser.add_argument(
        "--max-batch",
        type=positive_int,
        default=None,
        help="micro-batch size, both sides (default: the ingest's StreamOptions.max_batch)",
    )


def run(options: argparse.Namespace) -> Measurement:
    """Start a private broker, alternate bare and ingest repetitions, and return the medians."""
    stream = StreamOptions()
    if options.max_batch is not None:
        stream = stream.model_copy(update={"max_batch": options.max_batch})
    events = make_transactions(options.events)
    payloads = [(event.key(), event.to_bytes()) for event in events]
    expected = _expected_rows(events)
    chunks = _bare_chunks(expected, stream.max_batch)
    rounds = options.warmup + options.repeats
    log.info(
        "prepared",
        extra={
            "events": len(events),
            "cards": len({e.card_id for e in events}),
            "span_h": round((events[-1].event_time - events[0].event_time).total_seconds() / 3600),
            "max_batch": stream.max_batch,
            "linger_ms": stream.linger_ms,
            "metric_values": values.ValueClass.__name__,
        },
    )
    ingest: list[IngestSample] = []
    bare: list[BareSample] = []
    with private_broker() as kafka:
        topics = [_topic(i) for i in range(rounds)]
        create_topics(kafka, topics)
        bus_metrics = BusMetrics.for_registry(CollectorRegistry())
        with Producer(kafka, client_id="bench-ingest", metrics=bus_metrics) as producer:
            for i, topic in enumerate(topics):
                _publish(producer, topic, payloads)
                # Bare, ingest, then ingest, bare: the order alternates, so a drift over the run
                # does not favour either side.
                if i % 2 == 0:
                    bare_sample = _bare_repetition(chunks, len(events))
                    ingest_sample = _ingest_repetition(
                        kafka, topic, stream, producer, bus_metrics, expected
                    )
                else:
                    ingest_sample = _ingest_repetition(
                        kafka, topic, stream, producer, bus_metrics, expected
                    )
                    bare_sample = _bare_repetition(chunks, len(events))
                warmup = i < options.warmup
                if not warmup:
                    ingest.append(ingest_sample)
                    bare.append(bare_sample)
                log.info(
                    "warm-up repetition" if warmup else "repetition",
                    extra={
                        "round": f"{i + 1}/{rounds}",
                        "events_per_s": round(ingest_sample.events_per_s),
                        "bare_push_rows_per_s": round(bare_sample.push_rows_per_s),
                        "bare_online_push_rows_per_s": round(bare_sample.online_push_rows_per_s),
                        "events_per_cpu_s": round(ingest_sample.events_per_cpu_s),
                        "bare_push_rows_per_cpu_s": round(bare_sample.push_rows_per_cpu_s),
                        "batches": ingest_sample.batches,
                        **{
                            f"{stage}_s": round(seconds, 3)
                            for stage, seconds in _stage_split(ingest_sample).items()
                        },
                    },
                )
    return _summarize(ingest, bare, len(events), stream)


# -- ingest ------------------------------------------------------------------------------------


class _TimedSink:
    """Hands each batch to the ingest's sink; counts the events and the time spent in it."""

    def __init__(self, sink: TransactionSink) -> None:
        self.sink = sink
        self.count = 0
        self.batches = 0
        self.seconds = 0.0

    def __call__(self, batch: Sequence[Envelope[Any]]) -> None:
        started = time.perf_counter()
        self.sink(batch)
        self.seconds += time.perf_counter() - started
        self.count += len(batch)
        self.batches += 1


def _ingest_repetition(
    kafka: KafkaSettings,
    topic: str,
    stream: StreamOptions,
    dead_letters: Producer,
    bus_metrics: BusMetrics,
    expected: Sequence[CardRow],
) -> IngestSample:
    with _fresh_home() as settings:
        fs = FraudFeatureStore(settings)
        fs.apply()
        registry = CollectorRegistry()
        sink = _TimedSink(TransactionSink(fs, IngestMetrics(registry)))
        with Consumer(
            kafka,
            group_id=f"{topic}-group",
            topics={topic: Transaction},
            handler=sink,
            dead_letters=dead_letters,
            max_batch=stream.max_batch,
            linger_ms=stream.linger_ms,
            metrics=bus_metrics,
            client_id="bench-ingest",
        ) as consumer:
            before = _stage_sums(registry)
            started, cpu_started = time.perf_counter(), time.process_time()
            _drain(consumer, sink, len(expected))
            total_s = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_started
            after = _stage_sums(registry)
        stage_s = {stage: after[stage] - before[stage] for stage in STAGES}
        _check_ingest(fs, expected)
    count = len(expected)
    return IngestSample(
        count / total_s, count / cpu_s, total_s, sink.seconds, stage_s, sink.batches
    )


def _stage_sums(registry: CollectorRegistry) -> dict[str, float]:
    """The ingest's seconds so far in each stage, from its own batch histogram.

    Read before and after a repetition: in prometheus_client's multiprocess mode a metric's
    value outlives its registry, so a fresh registry need not start from zero.
    """
    return {
        stage: registry.get_sample_value("bottega_ingest_batch_seconds_sum", {"stage": stage})
        or 0.0
        for stage in STAGES
    }


def _drain(consumer: Consumer, sink: _TimedSink, expected: int) -> None:
    """Call ``poll_once`` until the sink has handled ``expected`` committed events."""
    progress_at = time.monotonic()
    while sink.count < expected:
        result = consumer.poll_once(timeout_ms=POLL_TIMEOUT_MS)
        if result.failed or result.dead_lettered:
            raise BenchmarkError(
                f"the ingest failed a batch or dead-lettered {result.dead_lettered} messages "
                "of a clean topic"
            )
        if not result.consumed:
            if time.monotonic() - progress_at > STALL_TIMEOUT_S:
                raise BenchmarkError(
                    f"ingested {sink.count} of {expected} events, then nothing for "
                    f"{STALL_TIMEOUT_S:.0f}s"
                )
            continue
        progress_at = time.monotonic()


def _check_ingest(fs: FraudFeatureStore, expected: Sequence[CardRow]) -> None:
    """Every event once offline, and the online values the aggregation computes."""
    for table in (fs.card_features, fs.transactions):
        counted = table.query("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM t")
        rows, distinct = counted["n"][0].as_py(), counted["d"][0].as_py()
        if rows != len(expected) or distinct != len(expected):
            raise BenchmarkError(
                f"the ingest left {rows} rows ({distinct} distinct events) in {table.name}, "
                f"not {len(expected)}"
            )
    newest: dict[str, CardRow] = {}
    for row in expected:
        newest[row.card_id] = row
    cards = sorted(newest)[:: max(1, len(newest) // CHECKED_CARDS)]
    for card_id, online in zip(cards, fs.online_card_rows(cards), strict=True):
        want = newest[card_id].features()
        got = {name: online[name] for name in want}
        if any(
            not math.isclose(got[k], v, rel_tol=1e-9) if isinstance(v, float) else got[k] != v
            for k, v in want.items()
        ):
            raise BenchmarkError(f"online values of {card_id} are {got}, not {want}")


# -- bare --------------------------------------------------------------------------------------


def _expected_rows(events: Sequence[Transaction]) -> list[CardRow]:
    """The card rows the ingest writes for ``events``: the same aggregation, run once."""
    rows = aggregate_batch(CardAggregator(), [(event, BACKFILL) for event in events]).rows
    if len(rows) != len(events):
        raise BenchmarkError(f"the aggregation kept {len(rows)} of {len(events)} events")
    return rows


def _bare_chunks(rows: Sequence[CardRow], size: int) -> list[pd.DataFrame]:
    """The rows as the push source takes them, in chunks of the ingest's micro-batch size."""
    frame = card_features_table(rows).drop_columns(["event_id"]).to_pandas()
    return [frame.iloc[i : i + size].reset_index(drop=True) for i in range(0, len(frame), size)]


def _bare_repetition(chunks: Sequence[pd.DataFrame], count: int) -> BareSample:
    # Imported here, not at the top: importing feast sets PROMETHEUS_MULTIPROC_DIR, and a
    # prometheus_client imported after that keeps every metric in files. The ingest service
    # imports prometheus_client first; so does this module, so its metrics behave the same.
    from feast.data_source import PushMode

    with _fresh_home() as settings:
        both, card_file = _bare_store(settings)
        started, cpu_started = time.perf_counter(), time.process_time()
        for chunk in chunks:
            both.store.push(CARD_PUSH_SOURCE, chunk, to=PushMode.ONLINE_AND_OFFLINE)
        push_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
        written = pq.read_metadata(card_file).num_rows
        if written != count:
            raise BenchmarkError(f"Feast's bare push left {written} rows offline, not {count}")
    with _fresh_home() as settings:
        online, _ = _bare_store(settings)
        started = time.perf_counter()
        for chunk in chunks:
            online.store.push(CARD_PUSH_SOURCE, chunk, to=PushMode.ONLINE)
        online_s = time.perf_counter() - started
    return BareSample(count / push_s, count / cpu_s, count / online_s)


def _bare_store(settings: BottegaSettings) -> tuple[FraudFeatureStore, Path]:
    """A store whose card view's offline source is one empty Parquet file, as Feast appends to."""
    fs = FraudFeatureStore(settings)
    fs.merchant_features.ensure()
    card_file = fs.card_features.path.parent / "card_features.parquet"
    card_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        CARD_FEATURES.remove(CARD_FEATURES.get_field_index("event_id")).empty_table(), card_file
    )
    repo = fraud_feature_repo(str(card_file), fs.merchant_features.glob)
    fs.store.apply(repo.objects())
    return fs, card_file


# -- common ------------------------------------------------------------------------------------


@contextmanager
def _fresh_home() -> Iterator[BottegaSettings]:
    with tempfile.TemporaryDirectory(prefix="bottega-bench-ingest-") as home:
        yield BottegaSettings(_env_file=None, home=Path(home))


def _publish(producer: Producer, topic: str, payloads: Sequence[tuple[bytes, bytes]]) -> None:
    for key, value in payloads:
        producer.send(topic, value, key=key)
    producer.flush()


def _stage_split(sample: IngestSample) -> dict[str, float]:
    """Where one repetition's time went, in seconds; the parts add up to its total."""
    return {
        "consume": sample.total_s - sample.handler_s,
        "aggregate": sample.stage_s["aggregate"],
        "offline_write": sample.stage_s["offline"],
        "online_push": sample.stage_s["online"],
        "sink_other": sample.handler_s - sum(sample.stage_s.values()),
    }


def _summarize(
    ingest: Sequence[IngestSample],
    bare: Sequence[BareSample],
    count: int,
    stream: StreamOptions,
) -> Measurement:
    events_per_s = median([s.events_per_s for s in ingest])
    bare_push = median([s.push_rows_per_s for s in bare])
    metrics = {
        "events_per_s": round(events_per_s, 1),
        "bare_push_rows_per_s": round(bare_push, 1),
        "bare_online_push_rows_per_s": round(median([s.online_push_rows_per_s for s in bare]), 1),
        "events_per_cpu_s": round(median([s.events_per_cpu_s for s in ingest]), 1),
        "bare_push_rows_per_cpu_s": round(median([s.push_rows_per_cpu_s for s in bare]), 1),
    }
    splits = [_stage_split(s) for s in ingest]
    for stage in splits[0]:
        metrics[f"ingest_{stage}_us_per_event"] = round(
            median([split[stage] for split in splits]) / count * 1e6, 2
        )
    metrics["ingest_batches_per_repetition"] = median([s.batches for s in ingest])
    metrics["events_per_repetition"] = float(count)
    metrics["max_batch_events"] = float(stream.max_batch)
    metrics["linger_ms"] = float(stream.linger_ms)
    return Measurement(metrics=metrics, ratios={"vs_bare_push": round(events_per_s / bare_push, 3)})


def _topic(repetition: int) -> str:
    return f"bench-ingest-{repetition}-{uuid.uuid4().hex[:8]}"


BENCHMARK = Benchmark(
    name="ingest",
    summary="transactions from Kafka into Feast (online and offline) against Feast's bare push",
    add_arguments=add_arguments,
    run=run,
)
