"""Keeping a DuckDB database open between the short connections of one step, and giving it up when idle.

Starting a DuckDB database costs ~20 ms a connection on this machine, even in memory, and closing it checkpoints:
the demo's run opened 180 connections, and keeping the database open between them took the run from 50 to 37 s
(BENCHMARKS.md, issue #28). While one connection to a file is open, DuckDB shares that database with every new
connection to it in the process (0.05 ms, benchmarks/duckdb_costs.py). So while a Dagster run or step has the
warehouse resource, the first connection leaves one "anchor" connection open, and a timer closes it once no
connection has been in use for `idle_seconds`. The lock on the file is then held at most that much longer than
before: another process (a sensor, a step of a parallel run) waiting for it, with its backoff, still gets it between
a step's bursts of I/O, never only after the step's compute. Nor does a long stream of short writes (a teacher's
answers, request by request) keep it: an anchor open for more than MAX_HOLD_SECONDS is closed as soon as no
connection is in use, as every connection was before. Outside a run (scripts, tests, Dask workers) nothing is kept open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb

MAX_HOLD_SECONDS = 2.0


@dataclass
class _Held:
    scopes: int = 0
    users: int = 0
    anchor: duckdb.DuckDBPyConnection | None = None
    opened_at: float = 0.0
    timer: threading.Timer | None = field(default=None, repr=False)


class KeepOpen:
    """Per-process registry of the databases kept open, keyed by path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}

    def begin(self, path: str) -> None:
        """A run or step has started using `path`: keep it open between its connections."""
        with self._lock:
            self._held.setdefault(path, _Held()).scopes += 1

    def end(self, path: str) -> None:
        """The run or step is over: close `path` now unless another scope in this process still uses it."""
        with self._lock:
            held = self._held.get(path)
            if held is None:
                return
            held.scopes -= 1
            if held.scopes <= 0 and held.users == 0:
                self._close(path, held)

    def acquire(self, path: str, connect: Callable[[], duckdb.DuckDBPyConnection]) -> bool:
        """Before a connection: whether `path` is kept open, after opening its anchor if needed. Called outside any
        connection, so a timer closing the anchor can never race the connection being opened."""
        with self._lock:
            held = self._held.get(path)
            if held is None or held.scopes <= 0:
                return False
            held.users += 1
            if held.timer is not None:
                held.timer.cancel()
                held.timer = None
            if held.anchor is None:
                try:
                    held.anchor = connect()
                    held.opened_at = time.monotonic()
                except BaseException:
                    held.users -= 1
                    raise
            return True

    def release(self, path: str, idle_seconds: float) -> None:
        """After a connection closed: once no connection is in use, close the anchor in `idle_seconds`."""
        with self._lock:
            held = self._held.get(path)
            if held is None:
                return
            held.users -= 1
            if held.users > 0:
                return
            if held.scopes <= 0 or idle_seconds <= 0 or time.monotonic() - held.opened_at > MAX_HOLD_SECONDS:
                self._close(path, held)
                return
            held.timer = threading.Timer(idle_seconds, self._close_if_idle, args=(path, held))
            held.timer.daemon = True
            held.timer.start()

    def is_open(self, path: str) -> bool:
        with self._lock:
            held = self._held.get(path)
            return held is not None and held.anchor is not None

    def _close_if_idle(self, path: str, held: _Held) -> None:
        with self._lock:
            if self._held.get(path) is held and held.users == 0:
                self._close(path, held)

    def _close(self, path: str, held: _Held) -> None:
        if held.timer is not None:
            held.timer.cancel()
            held.timer = None
        if held.anchor is not None:
            held.anchor.close()
            held.anchor = None
        if held.scopes <= 0:
            self._held.pop(path, None)


KEEP_OPEN = KeepOpen()
