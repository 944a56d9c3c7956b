"""Refreshes recompute only what changed: new or edited rows are embedded and predicted, nothing else."""

from __future__ import annotations

import pandas as pd
from dagster import AssetKey, AssetSelection, DagsterInstance

from tests.conftest import demo_slice
from tests.pipeline_helpers import query, run_pipeline


def _meta(result, key: str) -> dict:
    return [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey.from_user_string(key)][
        0
    ].materialization.metadata


def test_new_changed_and_removed_rows(pipeline_env, small_corpus):
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    base = demo_slice(400)
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        vectors_before = dict(query(db, "SELECT id, vector FROM embeddings"))

        extra = demo_slice(2000, seed=1)
        extra = extra[~extra["id"].isin(base["id"])].head(50)
        changed = base.copy()  # one text edited, two rows removed, 50 new rows
        changed.loc[0, "text"] = changed.loc[0, "text"] + " (edited)"
        changed = changed.drop(index=[1, 2])
        pd.concat([changed, extra]).to_parquet(small_corpus, index=False)
        refresh = AssetSelection.keys("corpus", "embeddings", "topic/predictions")
        result = run_pipeline(instance, selection=refresh)
        assert result.success

    emb = _meta(result, "embeddings")
    assert (emb["rows_computed"].value, emb["rows_reused"].value, emb["rows_removed"].value) == (51, 397, 2)
    pred = _meta(result, "topic/predictions")
    assert pred["rows_predicted"].value == 51 and pred["rows_reused"].value == 397
    assert query(db, "SELECT count(*) FROM topic.predictions")[0][0] == 448
    vectors_after = dict(query(db, "SELECT id, vector FROM embeddings"))
    unchanged = [i for i in base["id"].iloc[3:]]
    assert all(vectors_after[i] == vectors_before[i] for i in unchanged)
    assert vectors_after[base["id"].iloc[0]] != vectors_before[base["id"].iloc[0]]
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_refit_reembeds_everything_and_repredicts(pipeline_env, monkeypatch):
    monkeypatch.setenv("SCALELLM_EMBEDDER", "lsa")  # the one embedder fitted on the corpus
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        monkeypatch.setenv("SCALELLM_EMBEDDING_REFIT", "true")
        monkeypatch.setenv("SCALELLM_EMBEDDING_DIM", "48")
        result = run_pipeline(instance, selection=AssetSelection.keys("embeddings", "topic/predictions"))
        assert result.success
    assert _meta(result, "embeddings")["rows_computed"].value == 400
    assert _meta(result, "topic/predictions")["rows_predicted"].value == 400


def test_the_first_refresh_after_a_fit_reuses_every_unchanged_prediction(pipeline_env, small_corpus, monkeypatch):
    """Another process pickles the same fitted LSA to other bytes (a set's order follows the hash seed); the
    refresh must keep the stored model's version, or it re-stamps every row and re-predicts them all."""
    import itertools
    import pickle

    from scalellm_dagster.assets import shared

    monkeypatch.setenv("SCALELLM_EMBEDDER", "lsa")
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        versions_before = {r[0] for r in query(db, "SELECT DISTINCT embedding_version FROM embeddings")}
        counter = itertools.count()
        monkeypatch.setattr(
            shared.pickle, "dumps", lambda obj, *a, **k: pickle.dumps(obj, *a, **k) + b"\x00" * next(counter)
        )  # trailing bytes: unpickles the same, hashes otherwise
        extra = demo_slice(2000, seed=1)
        extra = extra[~extra["id"].isin(demo_slice(400)["id"])].head(40)
        pd.concat([demo_slice(400), extra]).to_parquet(small_corpus, index=False)
        result = run_pipeline(instance, selection=AssetSelection.keys("corpus", "embeddings", "topic/predictions"))
        assert result.success
    pred = _meta(result, "topic/predictions")
    assert pred["rows_predicted"].value == 40 and pred["rows_reused"].value == 400
    assert {r[0] for r in query(db, "SELECT DISTINCT embedding_version FROM embeddings")} == versions_before


def test_a_refresh_with_nothing_new_retrains_no_candidate_and_repredicts_nothing(pipeline_env):
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        result = run_pipeline(instance)
        assert result.success
    candidates = _meta(result, "topic/student_candidates")
    assert candidates["reused_stored_scores"].value is True and candidates["seconds"].value == 0.0
    assert _meta(result, "topic/predictions")["rows_reused"].value == 400
    assert _meta(result, "embeddings")["rows_computed"].value == 0
    assert all(e.passed for e in result.get_asset_check_evaluations())  # the reused scores pass the same checks
