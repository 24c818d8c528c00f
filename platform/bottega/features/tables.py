"""Append-only offline tables: a folder of Parquet files per table.

Each write adds one file, written to a temporary name and renamed into place, so a reader (or a
process that was killed mid-write) never sees half a file. Feast reads a table through a glob of
its files. Feast's own offline push reads the whole Parquet file and writes it back on every
push: its cost grows with the table, and a kill mid-write loses the table. One file per
micro-batch costs the same at any size, and survives a kill.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

EMPTY_STEM = "000000-empty"


class ParquetTable:
    """One offline table: ``<root>/<name>/*.parquet`` with a fixed Arrow schema."""

    def __init__(self, root: Path, name: str, schema: pa.Schema) -> None:
        self.name = name
        self.schema = schema
        self.path = root / name
        self._ready = False

    @property
    def glob(self) -> str:
        """The files of the table, as Feast's FileSource and DuckDB read them."""
        return str(self.path / "*.parquet")

    def ensure(self) -> None:
        """Create the folder with an empty file, so that a glob over it always has a schema."""
        if self._ready:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        empty = self.path / f"{EMPTY_STEM}.parquet"
        if not empty.exists():
            self._write_atomically(self.schema.empty_table(), empty)
        self._ready = True

    def clean_leftovers(self) -> int:
        """Delete temporary files of writers that were killed mid-write; return how many.

        Their rows were never visible to a reader, so nothing is lost.
        """
        leftovers = list(self.path.glob(".*.tmp")) if self.path.exists() else []
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        return len(leftovers)

    def write(self, table: pa.Table, stem: str | None = None) -> Path:
        """Add ``table`` as one new file (cast to the table's schema); return its path."""
        self.ensure()
        target = self.path / f"{stem or new_stem()}.parquet"
        self._write_atomically(table.select(self.schema.names).cast(self.schema), target)
        return target

    def stems(self) -> set[str]:
        """The stems of the table's data files."""
        if not self.path.exists():
            return set()
        return {p.stem for p in self.path.glob("*.parquet") if p.stem != EMPTY_STEM}

    def remove(self, stem: str) -> None:
        """Delete one file of the table."""
        (self.path / f"{stem}.parquet").unlink(missing_ok=True)

    def query(self, sql: str, params: Sequence[object] = ()) -> pa.Table:
        """Run ``sql`` in DuckDB, where the table is named ``t``."""
        self.ensure()
        with duckdb.connect() as con:
            con.execute(
                f"CREATE VIEW t AS SELECT * FROM read_parquet('{self.glob}', union_by_name=true)"
            )
            return con.sql(sql, params=list(params)).to_arrow_table()

    def read(self) -> pa.Table:
        """The whole table."""
        return self.query("SELECT * FROM t")

    def _write_atomically(self, table: pa.Table, target: Path) -> None:
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(table, tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(target)


def new_stem() -> str:
    """A file stem that sorts by creation time and never collides."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
