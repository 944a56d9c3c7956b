"""The automation under the real `dagster-daemon`, over a temporary DAGSTER_HOME: the source sensor reports new
files, the assets' conditions launch one refresh that embeds and predicts only the new rows with the deployed model,
and the model policy sensor replaces the model once when the corpus has grown past the task's threshold."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from scalellm_dagster.settings import ensure_dagster_home
from tests.conftest import SMALL_TASKS, corpus_folder, demo_slice
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


def _automation_world(tmp_path: Path, *python_files: Path) -> tuple[Path, dict]:
    """DAGSTER_HOME as `scalellm` writes it, and the daemon's env: the automation on, a workspace of the project's
    code location and of `python_files` (other code locations)."""
    home = ensure_dagster_home(tmp_path / "dagster_home")
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - python_module:\n      module_name: scalellm_dagster.definitions\n"
        f"      working_directory: {REPO}\n" + "".join(f"  - python_file: {path}\n" for path in python_files)
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SCALELLM_AUTOMATION": "on",  # the one documented step: the sensors start running by themselves
        "SCALELLM_SENSOR_INTERVAL_SECONDS": "2",
        "_WORKSPACE": str(workspace),
    }
    return home, env


@pytest.fixture
def daemon_world(pipeline_env, tmp_path, monkeypatch, tasks_file):
    """A corpus folder of 400 rows, already materialized, one task with `retrain: {growth: 0.25}`; DAGSTER_HOME as
    `scalellm` writes it; the daemon's env with the automation on."""
    folder, rows = corpus_folder(tmp_path, monkeypatch, 520)
    tasks_file.write_text(textwrap.dedent(SMALL_TASKS) + "    retrain: {growth: 0.25}\n")
    home, env = _automation_world(tmp_path)
    with DagsterInstance.from_config(str(home)) as instance:
        assert run_pipeline(instance).success  # as `scalellm run` would
    return folder, rows, home, env


def test_daemon_refreshes_only_new_rows_with_the_deployed_model_and_replaces_it_once_at_the_growth_threshold(
    daemon_world, tmp_path
):
    folder, rows, home, env = daemon_world
    db = env["SCALELLM_DUCKDB_PATH"]
    before = dict(query(db, "SELECT id, label || '|' || source || '|' || confidence FROM topic.predictions"))
    [version] = query(db, "SELECT DISTINCT model_version FROM topic.predictions")[0]
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
            # 1. Nothing changed: the source sensor reports nothing, the conditions request nothing.
            _wait("the source sensor's first tick", lambda: ": unchanged (" in log.read_text(), 90, log)
            _wait("an automation tick", lambda: "scalellm_automation" in log.read_text(), 90, log)
            assert len(_records(instance)) == runs_before

            # 2. 60 new rows (+15 %): one run, launched by the conditions, embeds and predicts only them.
            rows.iloc[400:460].to_parquet(folder / "part-001.parquet", index=False)
            [refresh] = _wait("the refresh run", lambda: _finished(instance, runs_before, 1), 180, log)
            assert refresh.dagster_run.status == DagsterRunStatus.SUCCESS
            assert _selected(instance, refresh) == {"corpus", "embeddings", "topic/predictions", "topic/drift_audit"}
            assert _metadata(instance, refresh, "embeddings")["rows_computed"] == 60
            predicted = _metadata(instance, refresh, "topic/predictions")
            assert (predicted["rows_predicted"], predicted["model_version"]) == (60, version)
            after = dict(query(db, "SELECT id, label || '|' || source || '|' || confidence FROM topic.predictions"))
            assert len(after) == 460 and all(after[i] == before[i] for i in before)  # 0 labels changed elsewhere
            time.sleep(6)  # a few ticks: nothing else is due (+15 % is below the growth policy's 25 %)
            assert len(_records(instance)) == runs_before + 1

            # 3. 60 more (+30 % since the draw): the refresh, then one replacement by the growth policy.
            rows.iloc[460:520].to_parquet(folder / "part-002.parquet", index=False)
            runs = _wait("the refresh and the replacement", lambda: _finished(instance, runs_before + 1, 2), 240, log)
            assert [r.dagster_run.status for r in runs] == [DagsterRunStatus.SUCCESS] * 2
            [growth] = [r for r in runs if r.dagster_run.tags.get("scalellm/model_policy") == "growth"]
            sample = _metadata(instance, growth, "topic/labeled_sample")
            assert "grew by 30.0%" in sample["model_decision"]
            replaced = _metadata(instance, growth, "topic/predictions")
            assert replaced["model_update"].startswith(f"replaced: {version} ->")
            assert replaced["rows_predicted"] == 520
            time.sleep(8)
            assert len(_records(instance)) == runs_before + 3  # once: measured from the new draw, +0 %
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert query(db, "SELECT count(*) FROM topic.model_history")[0][0] == 2


def _selected(instance: DagsterInstance, record) -> set[str]:
    return {
        e.dagster_event.asset_key.to_user_string()
        for e in instance.all_logs(record.dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    }


def _finished(instance: DagsterInstance, skip: int, count: int):
    records = _records(instance)[skip:]
    if len(records) >= count and all(r.dagster_run.status in FINISHED for r in records[:count]):
        return records[:count]
    return None


def _metadata(instance: DagsterInstance, record, asset: str) -> dict:
    """The metadata `asset`'s materialization in that run recorded, values unwrapped."""
    [event] = [
        e
        for e in instance.all_logs(record.dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        if e.dagster_event.asset_key == AssetKey.from_user_string(asset)
    ]
    return {k: v.value for k, v in event.dagster_event.event_specific_data.materialization.metadata.items()}


UPSTREAM_LOCATION = """
import os
import shutil

import dagster as dg


@dg.asset(key=["raw", "tickets"], description="The team's ingestion: it writes the table the corpus reads.")
def raw_tickets() -> None:
    shutil.copyfile(os.environ["_STAGED"], os.environ["SCALELLM_CORPUS"])


defs = dg.Definitions(assets=[raw_tickets])
"""


def test_a_materialization_of_the_upstream_asset_in_another_code_location_refreshes_the_corpus(
    pipeline_env, tmp_path, monkeypatch, tasks_file
):
    """`SCALELLM_UPSTREAM_ASSETS=raw/tickets`, with `raw/tickets` an asset of another code location of the same
    workspace: under the daemon, its new materialization alone launches the refresh of corpus and what follows."""
    rows = demo_slice(460)
    staged, table = tmp_path / "staged.parquet", tmp_path / "tickets.parquet"
    upstream = tmp_path / "upstream_location.py"
    upstream.write_text(UPSTREAM_LOCATION)
    monkeypatch.setenv("SCALELLM_CORPUS", str(table))
    monkeypatch.setenv("SCALELLM_UPSTREAM_ASSETS", "raw/tickets")
    monkeypatch.setenv("_STAGED", str(staged))
    tasks_file.write_text(textwrap.dedent(SMALL_TASKS))
    home, env = _automation_world(tmp_path, upstream)

    def ingest(n: int) -> None:
        rows.iloc[:n].to_parquet(staged, index=False)
        done = subprocess.run(
            [str(BIN / "dagster"), "asset", "materialize", "-f", str(upstream), "--select", "raw/tickets"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    ingest(400)
    db = env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.from_config(str(home)) as instance:
        assert run_pipeline(instance).success
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", env["_WORKSPACE"]], env=env, cwd=REPO, stdout=out, stderr=out
        )
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            _wait("an automation tick", lambda: "scalellm_automation" in log.read_text(), 90, log)
            runs_before = len(_records(instance))
            ingest(460)  # the team's ingestion writes 60 more rows and materializes raw/tickets

            def refreshed():
                runs = [
                    r
                    for r in _records(instance)[runs_before:]
                    if AssetKey("corpus") in (r.dagster_run.asset_selection or set())
                ]
                return runs if runs and all(r.dagster_run.status in FINISHED for r in runs) else None

            [refresh] = _wait("the refresh run", refreshed, 180, log)
            assert refresh.dagster_run.status == DagsterRunStatus.SUCCESS
            assert {"corpus", "embeddings", "topic/predictions"} <= _selected(instance, refresh)
            assert _metadata(instance, refresh, "embeddings")["rows_computed"] == 60
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert query(db, "SELECT count(*) FROM topic.predictions")[0][0] == 460
