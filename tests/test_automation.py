"""The automation: the source sensor, the assets' conditions and the model policy sensor, evaluated with Dagster's
testing utilities against a real instance (tests/test_daemon.py runs them under the real daemon)."""

from __future__ import annotations

import textwrap

import duckdb
import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    build_sensor_context,
    evaluate_automation_conditions,
)

from scalellm_dagster.definitions import build_definitions
from scalellm_dagster.settings import SettingError, Settings
from tests.conftest import SECOND_TASK, SMALL_TASKS, corpus_folder
from tests.pipeline_helpers import query, run_pipeline


def _tick(defs, name, instance, cursor=None):
    return defs.resolve_sensor_def(name).evaluate_tick(
        build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    )


@pytest.fixture
def drop_folder(pipeline_env, tmp_path, monkeypatch):
    """SCALELLM_CORPUS as a folder holding one file of 400 rows; returns (folder, 460 rows: the 60 to add later)."""
    return corpus_folder(tmp_path, monkeypatch, 460)


def _wanted(defs, instance, cursor) -> tuple[set[str], object]:
    """What the automation conditions request now (keys as strings), and the cursor for the next evaluation."""
    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys() if result.get_num_requested(k)}
    return keys, result.cursor


def _report(instance, tick) -> None:
    """What the daemon does with a sensor's reported events."""
    for event in tick.asset_events:
        instance.report_runless_asset_event(event)


def test_the_source_sensor_reports_changes_and_launches_nothing(pipeline_env, drop_folder):
    folder, rows = drop_folder
    defs = build_definitions(Settings.from_env())
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        first = _tick(defs, "corpus_source_sensor", instance)  # the files the corpus read: nothing to report
        assert first.asset_events == [] and first.run_requests == [] and first.cursor
        rows.iloc[400:].to_parquet(folder / "part-001.parquet", index=False)
        changed = _tick(defs, "corpus_source_sensor", instance, cursor=first.cursor)
        assert changed.run_requests == [] and [e.asset_key for e in changed.asset_events] == [AssetKey("corpus_source")]
        assert changed.asset_events[0].tags["dagster/data_version"] == changed.cursor != first.cursor
        again = _tick(defs, "corpus_source_sensor", instance, cursor=changed.cursor)
        assert again.asset_events == [] and again.run_requests == []


def test_new_data_refreshes_the_predictions_and_a_changed_definition_only_that_tasks_model(
    pipeline_env, drop_folder, tasks_file
):
    """The conditions, evaluated as the automation sensor would: a new source version requests the corpus, its
    embeddings and every task's predictions and audit, never a model; a task whose definition changed requests its
    model chain and nothing of the other task's."""
    folder, rows = drop_folder
    tasks_file.write_text(textwrap.dedent(SMALL_TASKS + SECOND_TASK))
    defs = build_definitions(Settings.from_env())
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        nothing, cursor = _wanted(defs, instance, None)
        assert nothing == set()
        rows.iloc[400:].to_parquet(folder / "part-001.parquet", index=False)
        _report(instance, _tick(defs, "corpus_source_sensor", instance))
        refresh, cursor = _wanted(defs, instance, cursor)
        assert refresh == {
            "corpus",
            "embeddings",
            *(f"{t}/{a}" for t in ("topic", "is_card") for a in ("predictions", "drift_audit")),
        }
        assert run_pipeline(instance, selection=AssetSelection.keys(*map(AssetKey.from_user_string, refresh))).success
        settled, cursor = _wanted(defs, instance, cursor)
        assert settled == set()

        tasks_file.write_text(textwrap.dedent(SMALL_TASKS + SECOND_TASK.replace("budget: 60", "budget: 70")))
        reloaded = build_definitions(Settings.from_env())  # the code location reloaded with the edited file
        changed, cursor = _wanted(reloaded, instance, cursor)
        branch = ("labeled_sample", "student_candidates", "model_selection_report", "predictions", "drift_audit")
        assert changed == {f"is_card/{a}" for a in branch}
        assert run_pipeline(instance, selection=AssetSelection.keys(*map(AssetKey.from_user_string, changed))).success

        # A task added to the file: its branch, once (Dagster's eager alone leaves an asset missing from the start).
        added = SECOND_TASK.replace("budget: 60", "budget: 70").replace("name: is_card", "name: card_again")
        tasks_file.write_text(textwrap.dedent(SMALL_TASKS + SECOND_TASK.replace("budget: 60", "budget: 70") + added))
        reloaded = build_definitions(Settings.from_env())
        new_task, cursor = _wanted(reloaded, instance, cursor)
        assert new_task == {f"card_again/{a}" for a in branch}
        assert run_pipeline(instance, selection=AssetSelection.keys(*map(AssetKey.from_user_string, new_task))).success
        assert _wanted(reloaded, instance, cursor)[0] == set()


def test_the_model_policy_sensor_requests_a_growth_replacement_once(pipeline_env, drop_folder, tasks_file):
    folder, rows = drop_folder
    tasks_file.write_text(textwrap.dedent(SMALL_TASKS) + "    retrain: {growth: 0.1}\n")
    defs = build_definitions(Settings.from_env())
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        waiting = _tick(defs, "model_policy_sensor", instance)
        assert waiting.run_requests == [] and "corpus +0.0% since the draw (retrain at +10%)" in waiting.skip_message
        rows.iloc[400:].to_parquet(folder / "part-001.parquet", index=False)  # +15 %
        assert run_pipeline(instance, selection=AssetSelection.keys("corpus", "embeddings")).success
        due = _tick(defs, "model_policy_sensor", instance)
        [request] = due.run_requests
        assert request.tags["scalellm/model_policy"] == "growth"
        assert AssetKey(["topic", "labeled_sample"]) in request.asset_selection
        again = _tick(defs, "model_policy_sensor", instance)
        assert again.run_requests[0].run_key == request.run_key  # the same key: Dagster runs it once
        replaced = run_pipeline(instance, selection=AssetSelection.keys(*request.asset_selection))
        assert replaced.success
        assert query(pipeline_env["SCALELLM_DUCKDB_PATH"], "SELECT count(*) FROM topic.model_history")[0][0] == 2
        assert _tick(defs, "model_policy_sensor", instance).run_requests == []  # measured from the new draw


def test_the_retrain_job_replaces_every_model(pipeline_env):
    defs = build_definitions(Settings.from_env())
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        result = defs.resolve_job_def("retrain_models").execute_in_process(instance=instance)
        assert result.success
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(["topic", "labeled_sample"])
    ]
    assert "requested" in event.materialization.metadata["model_decision"].value
    assert AssetKey("corpus") not in {e.asset_key for e in result.get_asset_materialization_events()}


def test_the_old_refresh_cron_setting_is_refused_with_what_replaced_it():
    with pytest.raises(SettingError, match="SCALELLM_REFRESH_CRON is gone.*SCALELLM_AUTOMATION=on"):
        Settings.from_env({"SCALELLM_REFRESH_CRON": "0 2 * * *"})


def test_checks_judge_the_corpus_their_run_read_not_one_replaced_since(pipeline_env, drop_folder):
    """A run that replaces `corpus` between another run's predictions and that run's checks cannot fail them; a
    broken table still fails; a check run on its own still reports a table gone stale."""
    from types import SimpleNamespace

    from dagster import AssetSelection

    from scalellm_dagster.checks.corpus_read import corpus_read
    from scalellm_dagster.checks.shared_checks import embeddings_match_corpus_check
    from scalellm_dagster.definitions import build_definitions
    from scalellm_dagster.resources import TaskStore, Warehouse
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
        store = TaskStore(warehouse=warehouse)  # the predictions check reads the task's state through it
        embeddings_match_corpus = embeddings_match_corpus_check()
        for check, resource in ((predictions_check, store), (embeddings_match_corpus, warehouse)):
            verdict = check.node_def.compute_fn.decorated_fn(as_first_run, resource)
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
        broken = predictions_check.node_def.compute_fn.decorated_fn(as_first_run, store)
        assert not broken.passed and "ids differ" in str(broken.metadata)

        # A later run replaces the predictions: the first run's check judges its own write by what it logged.
        assert run_pipeline(instance, selection=AssetSelection.assets("embeddings", "topic/predictions")).success
        read = corpus_read(as_first_run, warehouse, "topic.predictions")
        assert read.replaced_by is not None and read.own.run_id == first.run_id and read.own.rows == 400
        assert read.result_from_log().passed
        assert predictions_check.node_def.compute_fn.decorated_fn(as_first_run, store).passed
