"""The harness every benchmark uses: what a benchmark declares, and the record it leaves.

A benchmark is a :class:`Benchmark`: a name, the options it takes, and a ``run`` that returns a
:class:`Measurement` (medians and the same-run ratios). The harness wraps the measurement in a
:class:`BenchRecord` with the time, the machine, the package versions and the command that
reproduces it, and writes it to ``bench/results/NAME.json``. The record's keys are fixed by
DESIGN.md ("Benchmark records") so that tools can read them.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from bench.machine import Machine, describe_machine, package_versions
from bottega.errors import BottegaError

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"


class BenchmarkError(BottegaError):
    """A benchmark could not measure what it set out to (a stall, a lost message)."""


@dataclass(frozen=True)
class Measurement:
    """What one benchmark run measured: medians (units in the key names) and ratios."""

    metrics: dict[str, float]
    ratios: dict[str, float]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's declaration: its name, its command-line options and how to run it."""

    name: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Measurement]


class BenchRecord(BaseModel):
    """One benchmark's result, as ``bench/results/NAME.json`` holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    when: str
    machine: Machine
    versions: dict[str, str | None]
    metrics: dict[str, float]
    ratios: dict[str, float]
    command: str


def median(values: Sequence[float]) -> float:
    """The median of ``values``; a benchmark with no samples is an error, not a zero."""
    if not values:
        raise BenchmarkError("no samples to take the median of")
    return float(statistics.median(values))


def build_record(name: str, measurement: Measurement, command: str) -> BenchRecord:
    """Wrap ``measurement`` with the time, the machine and the versions it was taken with."""
    return BenchRecord(
        name=name,
        when=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=describe_machine(),
        versions=package_versions(PROJECT_ROOT),
        metrics=measurement.metrics,
        ratios=measurement.ratios,
        command=command,
    )


def write_record(record: BenchRecord, results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``record`` to ``results_dir/NAME.json`` atomically and return the path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{record.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n")
    tmp.replace(path)
    return path


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value
