"""The whole graph in-process on a small corpus: tables, row counts, and the shared embeddings."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, AssetSelection, DagsterInstance

from tests.conftest import SECOND_TASK
from tests.pipeline_helpers import query, run_pipeline


def test_full_graph_materializes_every_table(pipeline_env):
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        failed = [(e.asset_key.to_user_string(), e.check_name, e.metadata) for e in evaluations if not e.passed]
        assert failed == []
        # corpus (3: rows, topic gold, Dagster's column_schema_change), embeddings (1), topic branch (6); its drift
        # audit none (a first audit is a baseline: no result)
        assert len(evaluations) == 10
    assert query(db, "SELECT count(*) FROM corpus")[0][0] == 400
    assert query(db, "SELECT count(*), min(len(vector)), max(len(vector)) FROM embeddings")[0] == (400, 256, 256)
    sampled, valid = query(db, "SELECT count(*), count(*) FILTER (WHERE valid) FROM topic.labeled_sample")[0]
    assert sampled == 120 and valid == 120
    # every candidate at every default size (15, 30, 60, 120 halvings stop at 20 -> 30, 60, 120)
    assert query(db, "SELECT count(DISTINCT candidate), count(DISTINCT sample_size) FROM topic.student_candidates")[
        0
    ] == (3, 3)
    assert query(db, "SELECT count(*) FROM topic.model_selection_report WHERE chosen")[0][0] == 1
    # with a gold column, every candidate evaluated at the largest size is scored against gold on unseen rows
    gold_acc = query(
        db, "SELECT min(accuracy_vs_gold_heldout), count(accuracy_vs_gold_heldout) FROM topic.model_selection_report"
    )[0]
    assert 0.3 < gold_acc[0] <= 1 and gold_acc[1] >= 1
    # one prediction per corpus row, teacher rows keep the teacher's label
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM topic.predictions")[0] == (400, 400)
    mismatched = query(
        db,
        """SELECT count(*) FROM topic.predictions p JOIN topic.labeled_sample s USING (id)
           WHERE p.source <> 'teacher-sample' OR p.label <> s.teacher_label""",
    )[0][0]
    assert mismatched == 0
    labels = {r[0] for r in query(db, "SELECT DISTINCT label FROM topic.predictions")}
    assert labels <= {"cards", "payments_and_cash", "transfers", "top_ups", "fees_and_exchange", "account_and_security"}
    gold_acc = query(
        db,
        """SELECT avg(CASE WHEN p.label = c.topic THEN 1 ELSE 0 END) FROM topic.predictions p
           JOIN corpus c USING (id) WHERE p.source = 'student'""",
    )[0][0]
    assert gold_acc > 0.4  # six classes: chance is ~0.17-0.26 on this slice
    for plot in ("learning_curves", "accuracy_vs_time"):  # the report's figures, beside the warehouse file
        assert (Path(db).parent / "reports" / f"topic_{plot}.png").stat().st_size > 5000


def test_new_task_reuses_embeddings(pipeline_env, tasks_file: Path):
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        first = instance.fetch_materializations(AssetKey("embeddings"), limit=10).records
        vectors_before = query(db, "SELECT sum(list_sum(vector::FLOAT[])) FROM embeddings")[0][0]

        tasks_file.write_text(tasks_file.read_text() + SECOND_TASK)
        result = run_pipeline(instance, selection=AssetSelection.groups("is_card"))
        assert result.success
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        assert materialized == {
            AssetKey(["is_card", n])
            for n in ("labeled_sample", "student_candidates", "model_selection_report", "predictions", "drift_audit")
        }
        after = instance.fetch_materializations(AssetKey("embeddings"), limit=10).records
        assert len(first) == 1 and [r.storage_id for r in after] == [r.storage_id for r in first]
    assert query(db, "SELECT sum(list_sum(vector::FLOAT[])) FROM embeddings")[0][0] == vectors_before
    assert query(db, "SELECT count(*) FROM is_card.predictions")[0][0] == 400


def test_one_baseline_everywhere_and_the_teacher_badge_says_what_answers(pipeline_env, monkeypatch):
    """The dry-run estimate and the report price the row-by-row baseline the same way: one row per request,
    instructions and labels sent with each (the report once priced it per row in batches, 6x too low)."""
    from scalellm_dagster.definitions import build_definitions

    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    estimated = meta["topic/labeled_sample"]["baseline_cost_usd_estimate"].value
    reported = meta["topic/model_selection_report"]["baseline_cost_usd_extrapolated"].value
    assert reported == estimated > 0
    per_batched_row = meta["topic/labeled_sample"]["cost_usd"].value / 120 * 400
    assert reported > 2 * per_batched_row  # the instructions dominate a one-row request
    assert f"{reported:,.4f}" in meta["topic/model_selection_report"]["summary"].value

    kinds = {s.key.to_user_string(): s.kinds for s in build_definitions().resolve_all_asset_specs()}
    assert "python" in kinds["topic/labeled_sample"] and "openai" not in kinds["topic/labeled_sample"]
    monkeypatch.setenv("SCALELLM_TEACHER", "openai")
    kinds = {s.key.to_user_string(): s.kinds for s in build_definitions().resolve_all_asset_specs()}
    assert "openai" in kinds["topic/labeled_sample"]
