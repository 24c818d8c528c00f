"""The command line behind ``python -m bench`` and ``make bench`` / ``make bench-NAME``.

It talks to people through rich; the benchmarks below it log structurally.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from bench.catalog import BENCHMARKS, load_benchmark
from bench.harness import BenchRecord, build_record, write_record
from bench.report import write_results_md
from bottega.errors import BottegaError
from bottega.log import configure_logging

ALL = "all"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark named on the command line (or all of them); return the exit status."""
    console = Console()
    err_console = Console(stderr=True)
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.error(f"name a benchmark, or {ALL!r}")
    args = parser.parse_args(argv)
    if args.name != ALL and args.name not in BENCHMARKS:
        known = ", ".join([*BENCHMARKS, ALL])
        err_console.print(f"[bold red]error:[/] unknown benchmark {args.name!r} (known: {known})")
        return 2
    if args.name == ALL and args.options:
        err_console.print(
            "[bold red]error:[/] `all` takes no options; pass them to one benchmark instead"
        )
        return 2
    configure_logging("INFO", "console")

    names = list(BENCHMARKS) if args.name == ALL else [args.name]
    failed = []
    for name in names:
        try:
            record = _run_one(name, args.options, console)
        except BottegaError as exc:
            err_console.print(f"[bold red]error:[/] {name}: {exc}")
            failed.append(name)
            continue
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            return 130
        console.print(_record_table(record))
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run Bottega's benchmarks; each writes bench/results/NAME.json and "
        "regenerates bench/RESULTS.md.",
        epilog=f"benchmarks: {', '.join(BENCHMARKS)}; `python -m bench NAME -h` lists its options",
    )
    parser.add_argument("name", metavar="NAME", help=f"a benchmark, or {ALL!r} for every one")
    parser.add_argument(
        "options", nargs=argparse.REMAINDER, help="options for that benchmark", default=[]
    )
    return parser


def _run_one(name: str, options: Sequence[str], console: Console) -> BenchRecord:
    benchmark = load_benchmark(name)
    parser = argparse.ArgumentParser(prog=f"python -m bench {name}", description=benchmark.summary)
    benchmark.add_arguments(parser)
    parsed = parser.parse_args(list(options))
    console.rule(f"[bold]{name}[/]: {benchmark.summary}")
    measurement = benchmark.run(parsed)
    # The Makefile target reproduces a default run; a run with options names them.
    command = f"python -m bench {name} {shlex.join(options)}" if options else f"make bench-{name}"
    record = build_record(name, measurement, command)
    path = write_record(record)
    results_md = write_results_md()
    console.print(f"wrote [cyan]{path}[/] and [cyan]{results_md}[/]")
    return record


def _record_table(record: BenchRecord) -> Table:
    table = Table(title=f"{record.name} ({record.when})", title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    for key, value in {**record.metrics, **record.ratios}.items():
        table.add_row(key, f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}")
    return table
