"""The DuckDB warehouse resource: tables and embeddings, the teacher's caches and ledger, and the log of which corpus
each table came from, each in its own module, behind one Dagster resource.

DuckDB lets one process hold a database file at a time, and Dagster runs each step in its own process. So every
method opens a connection, does its I/O and closes it at once (heavy compute happens outside), and opening waits
with jittered backoff while another step holds the file instead of failing. Within a run or step the database stays
open between connections until it has been idle for `keep_open_idle_seconds` (`warehouse_keep_open`).
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
from scalellm_dagster.resources.warehouse_keep_open import KEEP_OPEN
from scalellm_dagster.resources.warehouse_snapshots import Snapshot, SnapshotLog
from scalellm_dagster.resources.warehouse_tables import CACHE_SCHEMA, TablesAndEmbeddings
from scalellm_dagster.resources.warehouse_unchanged import UnchangedLog

__all__ = ["CACHE_SCHEMA", "LEDGER_COLUMNS", "Snapshot", "Warehouse", "WarehouseLockTimeout", "embedding_batch"]


class WarehouseLockTimeout(RuntimeError):
    pass


class Warehouse(TablesAndEmbeddings, CachesAndLedger, SnapshotLog, UnchangedLog, DuckDBResource):
    """`DuckDBResource` with the project's table conventions."""

    lock_timeout_seconds: float = Field(default=300.0, description="How long to wait for another process's lock.")
    memory_limit: str = Field(default="2GB", description="DuckDB's buffer memory per connection; it spills beyond.")
    gx_dir: str = Field(
        default="",
        description="The folder of the checks' Great Expectations project (gx/ inside it); empty: the database's.",
    )
    data_docs_url: str = Field(default="", description="Where the Data Docs site is served; empty: file:// links.")
    data_docs: bool = Field(default=True, description="Render Data Docs at each validation (results are always kept).")
    keep_open_idle_seconds: float = Field(
        default=0.5,
        description="During a run or step, keep the database open between connections until it has been idle this "
        "long (each opening costs ~20 ms); other processes wait at most this much longer for its lock. 0: never.",
    )

    def setup_for_execution(self, context) -> None:
        if self._keeps_open:
            KEEP_OPEN.begin(self._key)

    def teardown_after_execution(self, context) -> None:
        if self._keeps_open:
            KEEP_OPEN.end(self._key)

    @property
    def gx_project_root(self) -> Path:
        """Where the checks' Great Expectations project lives: `gx_dir`, else beside the database file."""
        if self.gx_dir:
            return Path(self.gx_dir)
        return Path(self.database).resolve().parent if self.database != ":memory:" else Path.cwd() / "data"

    @property
    def configured_memory_limit(self) -> str:
        """The memory limit every connection opens with; a setting lowered for one scan or write goes back to it."""
        return self.connection_config.get("memory_limit", self.memory_limit)

    @property
    def _keeps_open(self) -> bool:
        return self.database != ":memory:" and self.keep_open_idle_seconds > 0

    @property
    def _key(self) -> str:
        return str(Path(self.database).resolve())

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        kept = self._keeps_open and KEEP_OPEN.acquire(self._key, self._connect_waiting_for_lock)
        try:
            conn = self._connect_waiting_for_lock()
            try:
                yield conn
            finally:
                conn.close()
        finally:
            if kept:
                KEEP_OPEN.release(self._key, self.keep_open_idle_seconds)

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
