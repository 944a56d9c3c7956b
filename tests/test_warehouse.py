"""The warehouse: atomic replacement (failure and kill mid-write), embeddings round trip, waiting for locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from scalellm_dagster.resources.warehouse import Warehouse, WarehouseLockTimeout


def _slow_reader(batches: int, fail_after: int | None = None, sleep_s: float = 0.0) -> pa.RecordBatchReader:
    schema = pa.schema([("id", pa.int64()), ("label", pa.string())])

    def gen():
        for i in range(batches):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("source broke mid-write")
            time.sleep(sleep_s)
            ids = np.arange(i * 1000, (i + 1) * 1000)
            yield pa.record_batch([pa.array(ids), pa.array(["new"] * 1000)], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, gen())


def test_failed_write_leaves_previous_table_intact(tmp_path):
    wh = Warehouse(database=str(tmp_path / "w.duckdb"))
    wh.write_table("t.labels", pd.DataFrame({"id": [1, 2, 3], "label": ["old"] * 3}))
    with pytest.raises(Exception, match="source broke mid-write"):
        wh.write_table("t.labels", _slow_reader(batches=50, fail_after=20))
    assert wh.read_df("SELECT count(*) AS n, min(label) AS l FROM t.labels").iloc[0].tolist() == [3, "old"]


def test_killed_write_leaves_previous_table_intact(tmp_path):
    db = tmp_path / "w.duckdb"
    wh = Warehouse(database=str(db))
    wh.write_table("t.labels", pd.DataFrame({"id": [1, 2, 3], "label": ["old"] * 3}))
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {os.getcwd()!r})
        from tests.test_warehouse import _slow_reader
        from scalellm_dagster.resources.warehouse import Warehouse
        print("writing", flush=True)
        Warehouse(database={str(db)!r}).write_table("t.labels", _slow_reader(batches=10_000, sleep_s=0.001))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(2.0)  # well inside the ~10 s write
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert wh.read_df("SELECT count(*) AS n, min(label) AS l FROM t.labels").iloc[0].tolist() == [3, "old"]


def test_embeddings_round_trip_as_float32_matrix(tmp_path):
    wh = Warehouse(database=str(tmp_path / "w.duckdb"))
    ids = np.arange(1000, 0, -1)
    matrix = np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32)
    wh.write_embeddings("embeddings", ids, matrix)
    assert wh.read_df("SELECT typeof(vector) AS t FROM embeddings LIMIT 1")["t"][0] == "FLOAT[16]"
    got_ids, got = wh.read_embeddings("embeddings")
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got[np.argsort(got_ids)], matrix[np.argsort(ids)])
    some = np.array([5, 999, 1])
    sub_ids, sub = wh.read_embeddings("embeddings", ids=some)
    np.testing.assert_array_equal(sub_ids, some)
    np.testing.assert_array_equal(sub, matrix[[list(ids).index(i) for i in some]])

    blocks = list(wh.iter_embeddings("embeddings", batch_rows=300))
    assert [len(b_ids) for b_ids, _ in blocks] == [300, 300, 300, 100]
    streamed_ids = np.concatenate([b_ids for b_ids, _ in blocks])
    streamed = np.concatenate([b for _, b in blocks])
    np.testing.assert_array_equal(streamed[np.argsort(streamed_ids)], matrix[np.argsort(ids)])


def _hold_lock(db, seconds: float) -> subprocess.Popen:
    script = f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('held', flush=True); time.sleep({seconds})"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_waits_for_another_process_lock_then_writes(tmp_path):
    db = tmp_path / "w.duckdb"
    proc = _hold_lock(db, 1.5)
    start = time.monotonic()
    Warehouse(database=str(db)).write_table("x", pd.DataFrame({"a": [1]}))
    assert time.monotonic() - start >= 0.5  # it had to wait for the other process
    proc.wait(timeout=30)


def test_gives_up_on_a_lock_with_a_clear_error(tmp_path):
    db = tmp_path / "w.duckdb"
    proc = _hold_lock(db, 5)
    try:
        with pytest.raises(WarehouseLockTimeout, match="another process has held its lock for more than 1s"):
            Warehouse(database=str(db), lock_timeout_seconds=1.0).write_table("x", pd.DataFrame({"a": [1]}))
    finally:
        proc.kill()
