"""The benchmarks that ``python -m bench`` knows, loaded only when asked for.

Each entry names the module that defines a ``BENCHMARK`` (a :class:`~bench.harness.Benchmark`).
A benchmark's heavy imports (torch, say) stay out of every other benchmark's run.
"""

from __future__ import annotations

import importlib

from bench.harness import Benchmark

BENCHMARKS: dict[str, str] = {
    "bus": "bench.bus",
    "ingest": "bench.ingest",
    "training": "bench.training",
    "serving": "bench.serving",
    "loop": "bench.loop",
    "soak": "bench.soak",
    "docker": "bench.docker",
}


def load_benchmark(name: str) -> Benchmark:
    """The benchmark called ``name``; raises KeyError for a name not in :data:`BENCHMARKS`."""
    module = importlib.import_module(BENCHMARKS[name])
    benchmark: Benchmark = module.BENCHMARK
    return benchmark
