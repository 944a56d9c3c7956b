"""The deployed model and its replacement policy (issue #42): a refresh predicts only new or edited rows with the
model as it is; the model is replaced only when the policy says so, and then every row once."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from scalellm_dagster.core.model_policy import Drawn, decide
from scalellm_dagster.names import task_fingerprint
from scalellm_dagster.tasks_config import TaskConfigError, load_tasks, parse_task
from tests.conftest import SECOND_TASK, SMALL_TASKS, demo_slice
from tests.pipeline_helpers import query, run_pipeline


def _meta(result, key: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey.from_user_string(key)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _predictions(db: str, task: str = "topic") -> pd.DataFrame:
    rows = query(db, f"SELECT id, label, source, confidence, student_label, model_version FROM {task}.predictions")
    return pd.DataFrame(rows, columns=["id", "label", "source", "confidence", "student_label", "model_version"])


def _answered(db: str) -> int:
    return query(db, "SELECT coalesce(sum(rows_answered), 0) FROM scalellm_cache.teacher_ledger")[0][0]


def _grow(path, base: pd.DataFrame, new: int = 60, edit: int = 5, delete: int = 10) -> tuple[pd.DataFrame, list]:
    """The corpus with `new` rows appended, `edit` texts edited and `delete` rows removed; returns it and the ids
    nobody touched."""
    extra = demo_slice(3000, seed=7)
    extra = extra[~extra["id"].isin(base["id"])].head(new)
    changed = base.copy()
    changed.loc[: edit - 1, "text"] = changed.loc[: edit - 1, "text"] + " (edited)"
    changed = changed.drop(index=range(edit, edit + delete))
    out = pd.concat([changed, extra], ignore_index=True)
    out.to_parquet(path, index=False)
    return out, base["id"].iloc[edit + delete :].tolist()


def test_a_refresh_keeps_the_model_and_every_untouched_prediction(pipeline_env, small_corpus):
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        before = _predictions(db).set_index("id")
        answered = _answered(db)
        audited = 0
        _, untouched = _grow(small_corpus, pd.read_parquet(small_corpus))
        result = run_pipeline(instance)  # the whole graph, as `scalellm run` or the nightly refresh
        assert result.success
        audited = query(db, "SELECT count(*) FROM topic.audit_answers")[0][0]
    sample = _meta(result, "topic/labeled_sample")
    assert sample["model"].startswith("kept") and sample["teacher_requests"] == 0
    assert sample["model_decision"].startswith("kept: definition unchanged")
    assert _meta(result, "topic/model_selection_report")["model"].startswith("kept")
    pred = _meta(result, "topic/predictions")
    assert pred["model_update"].startswith("kept")
    assert (pred["rows_predicted"], pred["rows_written"], pred["rows_removed"]) == (65, 65, 15)
    after = _predictions(db).set_index("id")
    assert len(after) == 450 and set(after["model_version"]) == set(before["model_version"])
    # byte for byte: label, source, confidence and the student's own label of every row nobody touched
    pd.testing.assert_frame_equal(after.loc[untouched], before.loc[untouched])
    assert not after.index.isin(before.index.difference(after.index)).any()
    # the teacher was asked only about the audit's rows, nothing for the sample
    assert _answered(db) == answered + audited and audited > 0
    assert query(db, "SELECT count(*) FROM topic.model_history")[0][0] == 1


def test_an_edited_sampled_row_loses_the_teachers_label_but_not_the_model(pipeline_env, small_corpus):
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        sampled = query(db, "SELECT id FROM topic.labeled_sample WHERE valid ORDER BY sample_rank LIMIT 2")
        corpus = pd.read_parquet(small_corpus)
        edited = corpus["id"] == sampled[0][0]
        corpus.loc[edited, "text"] = corpus.loc[edited, "text"] + " and something else entirely"
        corpus[corpus["id"] != sampled[1][0]].to_parquet(small_corpus, index=False)  # and one sampled row deleted
        version = _predictions(db)["model_version"].iloc[0]
        result = run_pipeline(instance)
        assert result.success
    after = _predictions(db).set_index("id")
    assert after.loc[sampled[0][0], "source"] == "student"
    assert sampled[1][0] not in after.index
    assert set(after["model_version"]) == {version}
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_a_refreshs_new_rows_go_through_the_deployed_cascade_and_old_ones_keep_their_source(
    pipeline_env, tasks_file, small_corpus
):
    tasks_file.write_text(textwrap.dedent(SMALL_TASKS) + "    cascade_budget: 40\n")
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        before = _predictions(db).set_index("id")
        threshold = before.loc[before["source"] == "teacher-cascade", "confidence"].max()
        assert (before["source"] == "teacher-cascade").sum() == 40
        _, untouched = _grow(small_corpus, pd.read_parquet(small_corpus), new=200, edit=0, delete=0)
        result = run_pipeline(instance)
        assert result.success
    meta = _meta(result, "topic/predictions")
    after = _predictions(db).set_index("id")
    pd.testing.assert_frame_equal(after.loc[untouched], before.loc[untouched])  # sources too: no re-planning
    new = after.loc[~after.index.isin(before.index)]
    sent = new[new["source"] == "teacher-cascade"]
    assert meta["cascade_confidence_threshold"] == pytest.approx(threshold)
    assert meta["cascade_new_rows_answered"] == len(sent) > 0 and meta["cascade_new_rows_sent"] <= 40
    assert (sent["confidence"] <= threshold).all()
    left_below = ((new["source"] == "student") & (new["confidence"] <= threshold)).sum()
    assert left_below == 0 or meta["cascade_new_rows_sent"] == 40  # every new row at or below it went, up to the budget


def test_a_changed_task_definition_replaces_only_that_tasks_model(pipeline_env, tasks_file):
    tasks_file.write_text(textwrap.dedent(SMALL_TASKS + SECOND_TASK))
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        topic_before, card_before = _predictions(db), _predictions(db, "is_card")
        tasks_file.write_text(textwrap.dedent(SMALL_TASKS.replace("budget: 120", "budget: 150") + SECOND_TASK))
        result = run_pipeline(instance)
        assert result.success
    assert "definition changed" in _meta(result, "topic/labeled_sample")["model_decision"]
    replaced = _meta(result, "topic/predictions")
    assert replaced["model_update"].startswith("replaced") and replaced["rows_predicted"] == 400
    assert replaced["previous_model_version"] == topic_before["model_version"].iloc[0]
    assert 0 <= replaced["labels_changed"] <= 400
    assert 0.5 <= replaced["student_agreement_with_previous_model"] <= 1.0
    assert _meta(result, "is_card/labeled_sample")["model"].startswith("kept")
    pd.testing.assert_frame_equal(_predictions(db, "is_card"), card_before)
    assert query(db, "SELECT count(*) FROM topic.labeled_sample")[0][0] == 150


def test_the_growth_policy_replaces_the_model_once_at_its_threshold(pipeline_env, tasks_file, small_corpus):
    tasks_file.write_text(textwrap.dedent(SMALL_TASKS) + "    retrain: {growth: 0.25}\n")
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    base = pd.read_parquet(small_corpus)
    extra = demo_slice(3000, seed=3)
    extra = extra[~extra["id"].isin(base["id"])]
    decisions = []
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        for rows in (60, 99, 100, 140):  # +15 %, +24.75 %, +25 % (fires), then +35 % of 400 (10 % of the new 500)
            pd.concat([base, extra.head(rows)]).to_parquet(small_corpus, index=False)
            result = run_pipeline(instance)
            assert result.success
            decisions.append(_meta(result, "topic/labeled_sample")["model_decision"])
    assert [d.startswith("kept") for d in decisions] == [True, True, False, True]
    assert "grew by 25.0%" in decisions[2] and "400 -> 500 rows" in decisions[2]
    assert query(db, "SELECT count(*) FROM topic.model_history")[0][0] == 2
    assert query(db, "SELECT count(DISTINCT model_version) FROM topic.deployed_model")[0][0] == 2


def test_a_user_can_force_a_replacement_and_a_rerun_with_nothing_new_changes_nothing(pipeline_env):
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        before = _predictions(db)
        again = run_pipeline(instance)
        forced = run_pipeline(instance, tags={"scalellm/retrain": "topic"})
        assert again.success and forced.success
    assert _meta(again, "topic/predictions")["rows_written"] == 0
    assert "requested" in _meta(forced, "topic/labeled_sample")["model_decision"]
    # the same corpus draws the same sample: a new model version that labels every row as the old one did
    replaced = _meta(forced, "topic/predictions")
    assert replaced["rows_predicted"] == 400 and replaced["labels_changed"] == 0
    after = _predictions(db)
    assert set(after["model_version"]) != set(before["model_version"])
    pd.testing.assert_frame_equal(after.drop(columns="model_version"), before.drop(columns="model_version"))


def test_policy_rules_in_order():
    drawn = Drawn(datetime(2026, 12, 1, 3, 0), 1000, "abc", "run", "emb")
    now = datetime(2026, 12, 7, 12, 0)
    kw = {"definition": "abc", "corpus_rows": 1100, "now": now, "embedding_versions": {"emb"}}
    assert decide(None, **kw).replace
    assert not decide(drawn, **kw).replace
    assert decide(drawn, **{**kw, "definition": "xyz"}).reason.startswith("the task's definition changed")
    assert decide(drawn, **kw, drift_due=True).replace
    assert decide(drawn, **kw, requested=True).replace
    assert decide(drawn, **{**kw, "embedding_versions": {"other"}}).reason.startswith("the embeddings were made")
    advised = Drawn(drawn.at, 1000, "abc", "run", "emb", budget=60)
    assert not decide(advised, **kw, budget=(60, "task budget")).replace
    assert decide(advised, **kw, budget=(150, "advice")).reason == "the budget to draw changed (60 -> 150: advice)"
    assert not decide(drawn, **kw, growth=0.25).replace
    assert decide(drawn, **{**kw, "corpus_rows": 1250}, growth=0.25).replace
    weekly = "0 3 * * 0"  # Sundays 03:00: 2026-12-06 03:00 is after the draw
    assert decide(drawn, **kw, cron=weekly).reason.startswith("the retrain schedule")
    assert not decide(drawn, **{**kw, "now": drawn.at + timedelta(days=1)}, cron=weekly).replace
    assert "next scheduled retrain 2026-12-06 03:00" in decide(drawn, **{**kw, "now": drawn.at}, cron=weekly).reason


def test_retrain_policy_in_the_tasks_file_is_validated_and_leaves_the_fingerprint(tmp_path):
    entry = {"name": "t", "instruction": "i", "labels": ["a", "b"], "budget": 50}
    plain = parse_task(entry)
    with_policy = parse_task({**entry, "retrain": {"cron": "0 3 * * 0", "growth": 0.25}})
    assert (with_policy.retrain_cron, with_policy.retrain_growth) == ("0 3 * * 0", 0.25)
    assert task_fingerprint(plain) == task_fingerprint(with_policy)  # the policy says when, not what
    for bad, says in (
        ({"cron": "every sunday"}, "'retrain.cron' must be a cron string"),
        ({"growth": 0}, "'retrain.growth' must be a number > 0"),
        ({"when": "x"}, "'retrain' must be a mapping"),
    ):
        with pytest.raises(TaskConfigError, match=says):
            parse_task({**entry, "retrain": bad}, where="tasks.yaml: tasks[0]")
    path = tmp_path / "tasks.yaml"
    path.write_text(textwrap.dedent(SMALL_TASKS) + "    retrain: {cron: '@weekly'}\n")
    assert load_tasks(path)[0].retrain_cron == "@weekly"


def test_scalellm_run_retrain_names_known_tasks_or_every_task(pipeline_env, tasks_file):
    from scalellm_dagster.cli.main import main, retrain_tags
    from scalellm_dagster.settings import SettingError

    assert retrain_tags(None, str(tasks_file)) == {}
    assert retrain_tags([], str(tasks_file)) == {"scalellm/retrain": "all"}
    assert retrain_tags(["topic"], str(tasks_file)) == {"scalellm/retrain": "topic"}
    with pytest.raises(SettingError, match="--retrain: no task named nope in .*; tasks: topic"):
        retrain_tags(["nope"], str(tasks_file))
    assert main(["run", "--retrain", "nope"]) == 2  # the CLI says it in one line, before any run


def test_a_kept_student_that_no_longer_unpickles_is_trained_again_under_the_same_version(pipeline_env, small_corpus):
    import duckdb

    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        [version] = query(db, "SELECT DISTINCT model_version FROM topic.predictions")[0]
        with duckdb.connect(db) as conn:  # what another scikit-learn's pickle looks like to this one: unreadable
            conn.execute("UPDATE topic.deployed_model SET model = 'not a pickle'::BLOB")
        _grow(small_corpus, pd.read_parquet(small_corpus), new=20, edit=0, delete=0)
        result = run_pipeline(instance)
        assert result.success
    pred = _meta(result, "topic/predictions")
    assert pred["model_version"] == version and pred["rows_predicted"] == 20
    assert query(db, "SELECT count(*) FROM topic.deployed_model WHERE model <> 'not a pickle'::BLOB")[0][0] == 1
