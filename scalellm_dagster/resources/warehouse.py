"""The DuckDB warehouse resource: tables and embeddings, the teacher's caches and ledger, and the log of which corpus
each table came from, each in its own module, behind one Dagster resource.

DuckDB lets one process hold a database file at a time, and Dagster runs each step in its own process. So every
method opens a connection, does its I/O and closes it at once (heavy compute happens outside), and opening waits
with jittered backoff while another step holds the file instead of failing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from scalellm_dagster.embedding_arrow import embedding_batch
from scalellm_dagster.resources.warehouse_cache import LEDGER_COLUMNS, CachesAndLedger
from scalellm_dagster.resources.warehouse_snapshots import Snapshot, SnapshotLog
from scalellm_dagster.resources.warehouse_tables import CACHE_SCHEMA, TablesAndEmbeddings

__all__ = ["CACHE_SCHEMA", "LEDGER_COLUMNS", "Snapshot", "Warehouse", "WarehouseLockTimeout", "embedding_batch"]


class WarehouseLockTimeout(RuntimeError):
    pass


class Warehouse(TablesAndEmbeddings, CachesAndLedger, SnapshotLog, DuckDBResource):
    """`DuckDBResource` with the project's table conventions."""

    lock_timeout_seconds: float = Field(default=300.0, description="How long to wait for another process's lock.")
    memory_limit: str = Field(default="2GB", description="DuckDB's buffer memory per connection; it spills beyond.")

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect_waiting_for_lock()
        try:
            yield conn
        finally:
            conn.close()

    def _connect_waiting_for_lock(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                return duckdb.connect(
                    self.database,
                    config={
                        "custom_user_agent": "scalellm",
                        "memory_limit": self.memory_limit,
                        **self.connection_config,
                    },
                )
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() > deadline:
                    raise WarehouseLockTimeout(
                        f"could not open {self.database}: another process has held its lock for more than "
                        f"{self.lock_timeout_seconds:.0f}s ({exc})"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
