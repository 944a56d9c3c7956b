"""The sensors and the schedule under the real `dagster-daemon`, over a temporary DAGSTER_HOME: no redundant run,
runs that queue instead of overlapping, and refreshes that embed and predict only the new rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from scalellm_dagster.settings import ensure_dagster_home
from tests.conftest import corpus_folder
from tests.pipeline_helpers import query, run_pipeline

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def _wait(what: str, condition, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; daemon log:\n{log.read_text()[-4000:]}")


def _records(instance: DagsterInstance):
    return sorted(instance.get_run_records(RunsFilter()), key=lambda r: r.create_timestamp)


def _dagster(env: dict, *args: str) -> None:
    subprocess.run(
        [str(BIN / "dagster"), *args, "-w", env["_WORKSPACE"]],
        env=env,
        check=True,
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def daemon_world(pipeline_env, tmp_path, monkeypatch):
    """A corpus folder of 400 rows, already materialized; DAGSTER_HOME as `scalellm` writes it; the daemon's env."""
    folder, rows = corpus_folder(tmp_path, monkeypatch, 520)
    home = ensure_dagster_home(tmp_path / "dagster_home")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_module:\n      module_name: scalellm_dagster.definitions\n"
        f"      working_directory: {REPO}\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SCALELLM_SENSOR_INTERVAL_SECONDS": "2",
        "SCALELLM_REFRESH_CRON": "* * * * *",
        "_WORKSPACE": str(workspace),
    }
    with DagsterInstance.from_config(str(home)) as instance:
        assert run_pipeline(instance).success  # as `dagster asset materialize --select '*'` would
    return folder, rows, home, env


def test_daemon_sensor_and_schedule_runs_queue_and_refresh_only_new_rows(daemon_world, tmp_path):
    folder, rows, home, env = daemon_world
    db = env["SCALELLM_DUCKDB_PATH"]
    answered_before = query(db, "SELECT sum(rows_answered) FROM scalellm_cache.teacher_ledger")[0][0]
    _dagster(env, "sensor", "start", "corpus_folder_sensor")
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", env["_WORKSPACE"]],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            runs_before = len(_records(instance))
            # 1. The first tick sees only the file already materialized: no run.
            _wait("the sensor's first tick", lambda: "no new or changed file" in log.read_text(), 90, log)
            assert len(_records(instance)) == runs_before

            # 2. A new file: one run. A second file while it runs: a second run, queued until the first ends. The
            # test holds the warehouse's lock meanwhile, so the first run waits inside its first step instead of
            # racing the sensor's next tick.
            with _warehouse_locked(db):
                rows.iloc[400:460].to_parquet(folder / "part-001.parquet", index=False)
                first = _wait("the first sensor run to start", lambda: _started(instance, runs_before), 60, log)
                rows.iloc[460:520].to_parquet(folder / "part-002.parquet", index=False)
                second = _wait("a second sensor run", lambda: _records(instance)[runs_before + 1 :], 60, log)[0]
                time.sleep(6)  # a few dequeue intervals: a queue that let it through would have done so by now
                assert _status(instance, second) == DagsterRunStatus.QUEUED
                assert _status(instance, first) == DagsterRunStatus.STARTED
            sensor_runs = _wait("two finished sensor runs", lambda: _finished(instance, runs_before, 2), 150, log)
            assert [r.dagster_run.status for r in sensor_runs] == [DagsterRunStatus.SUCCESS] * 2
            assert [r.dagster_run.tags["scalellm/new_files"] for r in sensor_runs] == [
                "part-001.parquet",
                "part-002.parquet",
            ]
            assert sensor_runs[1].start_time >= sensor_runs[0].end_time  # started only after the first ended
            # Each run embeds and predicts only what is new to it (the first may already have read both files).
            embedded = [_metadata(instance, run, "embeddings") for run in sensor_runs]
            assert sum(e["rows_computed"] for e in embedded) == 120
            assert [e["rows_computed"] + e["rows_reused"] for e in embedded][-1] == 520
            assert sum(_metadata(instance, run, "topic/predictions")["rows_predicted"] for run in sensor_runs) == 120
            # Refreshes take the sample's answers from the cache: the teacher was asked only the drift audits' rows.
            audited = query(db, "SELECT count(*) FROM topic.audit_answers")[0][0]
            assert (
                query(db, "SELECT sum(rows_answered) FROM scalellm_cache.teacher_ledger")[0][0]
                == answered_before + audited
            )  # the first materialization's audit was a baseline: it asked nothing
            # one audit per run that brought new rows, after the first materialization's
            assert query(db, "SELECT count(*) FROM topic.audit_log")[0][0] == 1 + sum(
                e["rows_computed"] > 0 for e in embedded
            )

            # 3. The schedule ticks while a sensor run is going: its run waits in the queue.
            with _warehouse_locked(db):
                rows.iloc[:30].assign(id=rows["id"].iloc[:30] + 10**7).to_parquet(
                    folder / "part-003.parquet", index=False
                )
                sensor_run = _wait(
                    "the third sensor run to start", lambda: _started(instance, runs_before + 2), 60, log
                )
                _dagster(env, "schedule", "start", "nightly_refresh")  # every minute (SCALELLM_REFRESH_CRON)
                scheduled = _wait("the schedule's run", lambda: _records(instance)[runs_before + 3 :], 75, log)[0]
                assert scheduled.dagster_run.tags.get("dagster/schedule_name") == "nightly_refresh"
                time.sleep(6)
                assert _status(instance, scheduled) == DagsterRunStatus.QUEUED
            runs = _wait("the sensor run and the schedule's run", lambda: _finished(instance, runs_before, 4), 180, log)
            assert runs[2].dagster_run.run_id == sensor_run.dagster_run.run_id
            assert runs[2].dagster_run.tags.get("scalellm/new_files") == "part-003.parquet"
            assert [r.dagster_run.status for r in runs[2:]] == [DagsterRunStatus.SUCCESS] * 2
            assert runs[3].start_time >= runs[2].end_time
            _dagster(env, "schedule", "stop", "nightly_refresh")
            assert len(_records(instance)) in (runs_before + 4, runs_before + 5)  # at most one more minute's tick
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert query(db, "SELECT count(*) FROM topic.predictions")[0][0] == 550
    assert query(db, "SELECT count(*) FROM embeddings")[0][0] == 550


@contextmanager
def _warehouse_locked(db: str):
    """Hold DuckDB's write lock on the warehouse: a run that reaches it waits (the warehouse retries for 300 s)."""
    conn = duckdb.connect(db)
    try:
        yield
    finally:
        conn.close()


def _started(instance: DagsterInstance, index: int):
    records = _records(instance)
    if len(records) > index and records[index].dagster_run.status == DagsterRunStatus.STARTED:
        return records[index]
    return None


def _status(instance: DagsterInstance, record) -> DagsterRunStatus:
    return instance.get_run_by_id(record.dagster_run.run_id).status


def _finished(instance: DagsterInstance, skip: int, count: int):
    records = _records(instance)[skip:]
    if len(records) >= count and all(r.dagster_run.status in FINISHED for r in records[:count]):
        return records[:count]
    return None


def _metadata(instance: DagsterInstance, record, asset: str) -> dict:
    [event] = [
        e
        for e in instance.all_logs(record.dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        if e.dagster_event.asset_key == AssetKey.from_user_string(asset)
    ]
    return {k: v.value for k, v in event.dagster_event.event_specific_data.materialization.metadata.items()}
