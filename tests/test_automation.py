"""Sensors and the schedule, evaluated with Dagster's testing utilities against a real instance."""

from __future__ import annotations

import json

import duckdb
import pytest
from dagster import AssetKey, DagsterInstance, build_schedule_context, build_sensor_context

from scalellm_dagster.definitions import build_definitions
from scalellm_dagster.settings import Settings
from tests.conftest import SECOND_TASK, corpus_folder
from tests.pipeline_helpers import query, run_pipeline


def _tick(defs, name, instance, cursor=None):
    return defs.resolve_sensor_def(name).evaluate_tick(
        build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    )


@pytest.fixture
def drop_folder(pipeline_env, tmp_path, monkeypatch):
    """SCALELLM_CORPUS as a folder holding one file of 400 rows; returns (folder, 460 rows: the 60 to add later)."""
    return corpus_folder(tmp_path, monkeypatch, 460)


def test_corpus_folder_sensor_runs_once_per_new_file_and_embeds_only_new_rows(pipeline_env, drop_folder):
    folder, rows = drop_folder
    with DagsterInstance.ephemeral() as instance:
        defs = build_definitions(Settings.from_env())
        first = _tick(defs, "corpus_folder_sensor", instance)
        assert len(first.run_requests) == 1  # the folder's first file
        assert run_pipeline(instance).success

        nothing = _tick(defs, "corpus_folder_sensor", instance, cursor=first.cursor)
        assert nothing.run_requests == [] and "no new or changed file" in nothing.skip_message

        rows.iloc[400:].to_parquet(folder / "part-001.parquet", index=False)
        new = _tick(defs, "corpus_folder_sensor", instance, cursor=first.cursor)
        assert len(new.run_requests) == 1
        request = new.run_requests[0]
        assert set(request.asset_selection) == {
            AssetKey("corpus"),
            AssetKey("embeddings"),
            AssetKey(["topic", "predictions"]),
            AssetKey(["topic", "drift_audit"]),
        }
        assert request.tags["scalellm/new_files"] == "part-001.parquet"
        again = _tick(defs, "corpus_folder_sensor", instance, cursor=new.cursor)
        assert again.run_requests == []  # the same file is not processed twice

        from dagster import AssetSelection

        result = run_pipeline(instance, selection=AssetSelection.assets(*request.asset_selection))
        assert result.success
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert meta["embeddings"]["rows_computed"].value == 60 and meta["embeddings"]["rows_reused"].value == 400
    assert meta["topic/predictions"]["rows_predicted"].value == 60
    assert query(pipeline_env["SCALELLM_DUCKDB_PATH"], "SELECT count(*) FROM topic.predictions")[0][0] == 460


def test_corpus_folder_sensor_skips_when_the_corpus_is_a_file(pipeline_env):
    with DagsterInstance.ephemeral() as instance:
        defs = build_definitions(Settings.from_env())
        tick = _tick(defs, "corpus_folder_sensor", instance)
    assert tick.run_requests == [] and "is a file, not a folder" in tick.skip_message


def test_task_config_sensor_reruns_only_the_changed_or_added_task(pipeline_env, tasks_file):
    with DagsterInstance.ephemeral() as instance:
        defs = build_definitions(Settings.from_env())
        baseline = _tick(defs, "task_config_sensor", instance)
        assert baseline.run_requests == [] and json.loads(baseline.cursor).keys() == {"topic"}
        assert _tick(defs, "task_config_sensor", instance, cursor=baseline.cursor).run_requests == []

        tasks_file.write_text(tasks_file.read_text().replace("budget: 120", "budget: 150") + SECOND_TASK)
        stale = _tick(defs, "task_config_sensor", instance, cursor=baseline.cursor)  # before the reload
        assert [r.tags["scalellm/task"] for r in stale.run_requests] == ["topic"]

        reloaded = build_definitions(Settings.from_env())
        tick = _tick(reloaded, "task_config_sensor", instance, cursor=baseline.cursor)
        assert sorted(r.tags["scalellm/task"] for r in tick.run_requests) == ["is_card", "topic"]
        is_card = next(r for r in tick.run_requests if r.tags["scalellm/task"] == "is_card")
        assert set(is_card.asset_selection) == {
            AssetKey(["is_card", n])
            for n in ("labeled_sample", "student_candidates", "model_selection_report", "predictions")
        }
        assert _tick(reloaded, "task_config_sensor", instance, cursor=tick.cursor).run_requests == []


def test_nightly_schedule_requests_the_whole_graph(pipeline_env, monkeypatch):
    monkeypatch.setenv("SCALELLM_REFRESH_CRON", "30 3 * * *")
    defs = build_definitions(Settings.from_env())
    schedule = defs.resolve_schedule_def("nightly_refresh")
    assert schedule.cron_schedule == "30 3 * * *"
    with DagsterInstance.ephemeral() as instance:
        data = schedule.evaluate_tick(build_schedule_context(instance=instance))
    assert len(data.run_requests) == 1 and data.run_requests[0].job_name in (None, "scalellm_all")


def test_first_tick_of_the_folder_sensor_skips_files_already_materialized(pipeline_env, drop_folder):
    folder, rows = drop_folder
    with DagsterInstance.ephemeral() as instance:
        defs = build_definitions(Settings.from_env())
        assert run_pipeline(instance).success  # materialized before the sensor ever ran
        first = _tick(defs, "corpus_folder_sensor", instance)
        assert first.run_requests == [] and "no new or changed file" in first.skip_message
        rows.iloc[400:].to_parquet(folder / "part-001.parquet", index=False)
        new = _tick(defs, "corpus_folder_sensor", instance, cursor=first.cursor)
        assert [r.tags["scalellm/new_files"] for r in new.run_requests] == ["part-001.parquet"]
        assert new.run_requests[0].tags["scalellm/writes"] == "warehouse"


def test_first_tick_of_the_task_sensor_reruns_only_tasks_materialized_with_another_definition(pipeline_env, tasks_file):
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        defs = build_definitions(Settings.from_env())
        fresh = _tick(defs, "task_config_sensor", instance)
        assert fresh.run_requests == [] and json.loads(fresh.cursor).keys() == {"topic"}

        tasks_file.write_text(tasks_file.read_text().replace("budget: 120", "budget: 130"))
        reloaded = build_definitions(Settings.from_env())
        stale = _tick(reloaded, "task_config_sensor", instance)  # a sensor started after the edit
        assert [r.tags["scalellm/task"] for r in stale.run_requests] == ["topic"]


def test_the_local_instance_runs_one_run_at_a_time(tmp_path):
    from scalellm_dagster.settings import ensure_dagster_home

    old = tmp_path / "old_home"
    old.mkdir()
    (old / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for home in (ensure_dagster_home(tmp_path / "new_home"), ensure_dagster_home(old)):
        with DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1


def test_checks_judge_the_corpus_their_run_read_not_one_replaced_since(pipeline_env, drop_folder):
    """A run that replaces `corpus` between another run's predictions and that run's checks cannot fail them; a
    broken table still fails; a check run on its own still reports a table gone stale."""
    from types import SimpleNamespace

    from dagster import AssetSelection

    from scalellm_dagster.checks.corpus_read import corpus_read
    from scalellm_dagster.checks.shared_checks import embeddings_match_corpus
    from scalellm_dagster.definitions import build_definitions
    from scalellm_dagster.resources import Warehouse
    from tests.pipeline_helpers import run_checks

    folder, rows = drop_folder
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    warehouse = Warehouse(database=db)
    with DagsterInstance.ephemeral() as instance:
        first = run_pipeline(instance)
        assert first.success
        rows.iloc[400:].to_parquet(folder / "part-001.parquet", index=False)
        assert run_pipeline(instance, selection=AssetSelection.assets("corpus")).success  # 460 rows, not yet embedded

        # The first run's checks, evaluated now, as that run (their own steps, with its run id).
        as_first_run = SimpleNamespace(run=SimpleNamespace(run_id=first.run_id), instance=instance)
        defs = build_definitions(Settings.from_env())
        [predictions_check] = [
            c for c in defs.asset_checks if "predictions_cover_corpus" in {k.name for k in c.check_keys}
        ]
        for check in (predictions_check, embeddings_match_corpus):
            verdict = check.node_def.compute_fn.decorated_fn(as_first_run, warehouse)
            assert verdict.passed, verdict.metadata
            assert "compared by id fingerprint" in verdict.metadata["corpus_compared"].text
        assert "(400 rows)" in verdict.metadata["corpus_compared"].text

        # Checks run on their own judge the tables as they stand: made from an older corpus, they are stale.
        stale = {
            e.check_name: e
            for e in run_checks(instance, ["embeddings", "topic/predictions"]).get_asset_check_evaluations()
        }
        assert not stale["embeddings_match_corpus"].passed and not stale["predictions_cover_corpus"].passed

        # The stand-in still catches a table that lost a row after it was written.
        with duckdb.connect(db) as conn:
            conn.execute("DELETE FROM topic.predictions WHERE id = (SELECT min(id) FROM topic.predictions)")
        broken = predictions_check.node_def.compute_fn.decorated_fn(as_first_run, warehouse)
        assert not broken.passed and "ids differ" in str(broken.metadata)

        # A later run replaces the predictions: the first run's check judges its own write by what it logged.
        assert run_pipeline(instance, selection=AssetSelection.assets("embeddings", "topic/predictions")).success
        read = corpus_read(as_first_run, warehouse, "topic.predictions")
        assert read.replaced_by is not None and read.own.run_id == first.run_id and read.own.rows == 400
        assert read.result_from_log().passed
        assert predictions_check.node_def.compute_fn.decorated_fn(as_first_run, warehouse).passed
