"""The warehouse: atomic replacement (failure and kill mid-write), embeddings round trip, waiting for locks, and
keeping the database open during a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from scalellm_dagster.embedding_arrow import embedding_schema
from scalellm_dagster.resources import warehouse_keep_open
from scalellm_dagster.resources.warehouse import Warehouse, WarehouseLockTimeout
from scalellm_dagster.resources.warehouse_keep_open import KEEP_OPEN


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


def _another_process_opens(db) -> bool:
    script = f"import duckdb; duckdb.connect({str(db)!r}).close()"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60).returncode == 0


def test_a_run_keeps_the_database_open_between_connections_and_lets_go_when_idle(tmp_path, monkeypatch):
    monkeypatch.setattr(warehouse_keep_open, "MAX_HOLD_SECONDS", 60.0)  # this test's pauses are longer than a step's
    db = tmp_path / "w.duckdb"
    wh = Warehouse(database=str(db), keep_open_idle_seconds=3.0)
    outside = Warehouse(database=str(tmp_path / "other.duckdb"))
    outside.write_table("x", pd.DataFrame({"a": [1]}))
    assert not KEEP_OPEN.is_open(outside._key)  # outside a run, nothing is kept open

    wh.setup_for_execution(None)  # what Dagster does when a run or step takes the resource
    try:
        wh.write_embeddings("embeddings", np.arange(10), np.ones((10, 4), dtype=np.float32))
        assert KEEP_OPEN.is_open(wh._key)
        assert not _another_process_opens(db)  # held between connections...
        time.sleep(3.5)
        assert not KEEP_OPEN.is_open(wh._key)
        assert _another_process_opens(db)  # ...until idle

        configured = wh.read_df("SELECT current_setting('memory_limit') AS m")["m"][0]
        assert len(list(wh.iter_embeddings("embeddings", batch_rows=4))) == 3  # lowers the limit while it scans
        assert KEEP_OPEN.is_open(wh._key)
        # the database outlives the scan's connection: its setting must not
        assert wh.read_df("SELECT current_setting('memory_limit') AS m")["m"][0] == configured
    finally:
        wh.teardown_after_execution(None)
    assert not KEEP_OPEN.is_open(wh._key)  # closed at the run's end, not a second later
    assert _another_process_opens(db)


def test_dagster_runs_keep_the_warehouse_open_and_close_it_at_the_end(tmp_path):
    db = tmp_path / "w.duckdb"
    seen = []

    @dg.asset
    def two_writes(warehouse: Warehouse) -> None:
        warehouse.write_table("a", pd.DataFrame({"x": [1]}))
        seen.append(KEEP_OPEN.is_open(warehouse._key))
        warehouse.write_table("b", pd.DataFrame({"x": [2]}))

    result = dg.materialize([two_writes], resources={"warehouse": Warehouse(database=str(db))})
    assert result.success and seen == [True]
    assert not KEEP_OPEN.is_open(str(db.resolve()))
    assert _another_process_opens(db)


def test_a_long_stream_of_short_connections_lets_other_processes_in(tmp_path, monkeypatch):
    monkeypatch.setattr(warehouse_keep_open, "MAX_HOLD_SECONDS", 0.5)
    wh = Warehouse(database=str(tmp_path / "w.duckdb"), keep_open_idle_seconds=30.0)
    wh.setup_for_execution(None)
    try:
        wh.write_table("x", pd.DataFrame({"a": [1]}))
        assert KEEP_OPEN.is_open(wh._key)  # idle for less than 30 s: kept
        time.sleep(0.6)
        wh.write_table("x", pd.DataFrame({"a": [2]}))
        assert not KEEP_OPEN.is_open(wh._key)  # open for longer than MAX_HOLD_SECONDS: closed when the write ended
    finally:
        wh.teardown_after_execution(None)


def test_a_fitted_model_is_stored_with_its_vectors_and_replaced(tmp_path):
    wh = Warehouse(database=str(tmp_path / "w.duckdb"))
    blob = os.urandom(4500)
    wh.write_embedding_batches("embeddings", embedding_schema(pa.int64(), 4), [], model=("lsa", blob))
    assert wh.load_model("lsa") == blob
    wh.write_embedding_batches("embeddings", embedding_schema(pa.int64(), 4), [], model=("lsa", blob[::-1]))
    assert wh.load_model("lsa") == blob[::-1]  # a refit replaces the row in the same transaction as the vectors
    wh.save_model("lsa", b"refitted")
    assert wh.load_model("lsa") == b"refitted" and wh.load_model("other") is None
    assert wh.read_df("SELECT count(*) AS n FROM scalellm_cache.models")["n"][0] == 1


def test_a_checks_parts_stream_out_of_duckdb_without_the_db_api_copy_warning(tmp_path):
    import warnings

    from scalellm_dagster.checks.row_scans import export_parts
    from scalellm_dagster.cluster.parts import read_part

    wh = Warehouse(database=str(tmp_path / "w.duckdb"))
    wh.write_table("rows", pd.DataFrame({"id": np.arange(250), "text": [f"t{i}" for i in range(250)]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pyarrow's "Arrow output on a DB-API result makes an extra copy" included
        paths = export_parts(wh, "SELECT id, text FROM rows ORDER BY id", str(tmp_path / "parts"), 100)
    assert [read_part(p).num_rows for p in paths] == [100, 100, 50]
    assert read_part(paths[-1]).column("id").to_pylist() == list(range(200, 250))
