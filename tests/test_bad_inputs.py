"""Each kind of bad input gives a specific error or failed check, and nothing downstream is materialized."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance

from scalellm_dagster.core.corpus import CorpusError
from scalellm_dagster.embedders.lsa import LsaEmbedder
from tests.conftest import demo_slice
from tests.pipeline_helpers import query, run_pipeline

DOWNSTREAM_OF_EMBEDDINGS = {
    AssetKey(["topic", n]) for n in ("labeled_sample", "student_candidates", "model_selection_report", "predictions")
}


def materialized(result) -> set[AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def failed_checks(result) -> dict[str, dict]:
    return {e.check_name: e.metadata for e in result.get_asset_check_evaluations() if not e.passed}


def step_error(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "expected a failed step"
    return (
        failures[0].step_failure_data.error.cause.message
        if failures[0].step_failure_data.error.cause
        else failures[0].step_failure_data.error.message
    )


def write_corpus(path, df: pd.DataFrame) -> None:
    df.to_parquet(path, index=False)


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (
            lambda df: df.assign(id=df["id"].astype("float").where(df.index != 3)),
            "column 'id' has 1 null id(s) at row position(s) 3",
        ),
        (
            lambda df: df.assign(id=df["id"].where(df.index != 5, df["id"].iloc[4])),
            "column 'id' has 1 duplicated id(s)",
        ),
        (
            lambda df: df.assign(text=df["text"].where(df.index != 7, "   ")),
            "column 'text' is null or blank for 1 row(s), ids ",
        ),
    ],
    ids=["null_ids", "duplicate_ids", "empty_text"],
)
def test_bad_corpus_fails_before_anything_downstream(pipeline_env, small_corpus, corrupt, expected):
    df = demo_slice(400)
    write_corpus(small_corpus, corrupt(df))
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    assert not result.success
    message = step_error(result)
    assert expected in message
    assert materialized(result) == set()  # the corpus table was not written, nothing downstream ran


def test_bad_corpus_error_names_ids_and_column(tmp_path):
    from scalellm_dagster.core.corpus import normalise_corpus

    df = pd.DataFrame({"key": [1, 2, 2, 3], "body": ["a", "b", "c", "d"]})
    with pytest.raises(CorpusError, match=r"column 'key' has 1 duplicated id\(s\): 2; ids must be unique"):
        normalise_corpus(df, "key", "body", source="my.csv")
    with pytest.raises(CorpusError, match=r"column\(s\) \['text'\] not found; columns present: \['key', 'body'\]"):
        normalise_corpus(df, "key", "text", source="my.csv")


def test_gold_labels_outside_label_set_block_that_task_only(pipeline_env, small_corpus, tasks_file):
    from scalellm_dagster.cli.failures import failure_lines
    from tests.conftest import SECOND_TASK, SMALL_TASKS

    tasks_file.write_text(SMALL_TASKS + SECOND_TASK)
    df = demo_slice(400)
    df.loc[[0, 1], "topic"] = "mortgages"
    write_corpus(small_corpus, df)
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    failed = failed_checks(result)
    assert "topic_gold_labels_in_label_set" in failed
    assert "mortgages" in failed["topic_gold_labels_in_label_set"]["failures"].value
    done = materialized(result)
    assert not done & DOWNSTREAM_OF_EMBEDDINGS  # the task with the bad gold column stopped before its teacher
    assert {AssetKey("embeddings"), AssetKey(["is_card", "predictions"])} <= done  # the other task went on
    message = step_error(result)
    assert (
        "task 'topic': gold column 'topic' holds 2 value(s) outside the task's labels: 'mortgages (2 rows)'" in message
        and str(df.loc[0, "id"]) in message
    )
    lines = failure_lines(result.all_events)
    assert any(line.startswith("topic/labeled_sample: task 'topic': gold column") for line in lines)
    assert "corpus: check topic_gold_labels_in_label_set failed:" in lines
    assert any("mortgages" in line for line in lines)


def _broken_embedder(monkeypatch, breaker):
    monkeypatch.setenv("SCALELLM_EMBEDDER", "lsa")  # the breaker wraps LSA's vectors
    original = LsaEmbedder.embed

    def embed(self, texts, log=lambda _m: None):
        return breaker(original(self, texts, log))

    monkeypatch.setattr(LsaEmbedder, "embed", embed)


def _with_nan(m):
    m = m.copy()
    m[3, 5] = np.nan
    return m


def test_wrong_embedding_dimension_fails_the_step_before_anything_is_written(pipeline_env, monkeypatch):
    _broken_embedder(monkeypatch, lambda m: np.ascontiguousarray(m[:, :-1]))  # declared 64, returns 63
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    assert "returned vectors of shape (400, 63)" in step_error(result)
    assert "expected (400, 64), its declared dimension" in step_error(result)
    assert materialized(result) == {AssetKey("corpus")}


def test_wrong_dimension_in_a_stored_table_fails_the_check(pipeline_env):
    """A table written by another process with vectors of the wrong size: the blocking check catches it."""
    from scalellm_dagster.resources.warehouse import Warehouse
    from tests.pipeline_helpers import run_checks

    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        ids = [r[0] for r in query(db, "SELECT id FROM corpus")]
        Warehouse(database=db).write_embeddings("embeddings", np.array(ids), np.ones((len(ids), 63)) / np.sqrt(63))
        failed = failed_checks(run_checks(instance, ["embeddings"]))
    assert "expect_column_values_to_be_between(dim)" in failed["embeddings_match_corpus"]["failures"].value


def test_nan_vector_blocks_training(pipeline_env, monkeypatch):
    def add_nan(m):
        m = m.copy()
        m[3, 5] = np.nan
        return m

    _broken_embedder(monkeypatch, add_nan)
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    failed = failed_checks(result)
    assert set(failed) == {"embeddings_match_corpus"}
    assert "expect_vectors_to_be_finite(finite)" in failed["embeddings_match_corpus"]["failures"].value
    assert materialized(result) & DOWNSTREAM_OF_EMBEDDINGS == set()
    from scalellm_dagster.cli.failures import failure_lines

    lines = failure_lines(result.all_events)  # what `scalellm run` prints last: the findings, not only "failed"
    assert lines[0] == "embeddings: check embeddings_match_corpus failed (blocking: what depends on it did not run):"
    assert lines[1].startswith("    expect_vectors_to_be_finite(finite): expected yes; 1 unexpected of 400")
    assert "ids " in lines[1] and not any("DagsterAssetCheckFailedError" in line for line in lines)


def test_changed_corpus_with_stale_embeddings_is_caught(pipeline_env, small_corpus):
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        write_corpus(small_corpus, demo_slice(400).iloc[:300])  # the source shrank by 100 rows
        # Reload the corpus and re-check the existing embeddings and predictions against it.
        result = run_pipeline(instance, selection=AssetSelection.keys("corpus"))
        assert result.success
        from tests.pipeline_helpers import run_checks

        checks = run_checks(instance, ["embeddings", "topic/predictions"])
    failed = failed_checks(checks)
    assert {"embeddings_match_corpus", "predictions_cover_corpus"} <= set(failed)
    assert "extra (not in corpus)" in failed["embeddings_match_corpus"]["failures"].value
    assert "extra (not in corpus)" in failed["predictions_cover_corpus"]["failures"].value
    assert query(db, "SELECT count(*) FROM corpus")[0][0] == 300
