"""Sharded mode: embeddings and predictions as Dagster partitions, each shard its own run and its own file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from scalellm_dagster.core.sharding import shard_of, shard_positions, share_of_budget
from scalellm_dagster.settings import ensure_dagster_home
from scalellm_dagster.shard_runs import run_sharded
from tests.conftest import demo_slice
from tests.pipeline_helpers import query, run_pipeline


def test_shard_assignment_is_a_stable_partition_of_the_ids():
    ids = np.arange(10_000)
    shards = shard_of(ids, 4)
    assert set(shards) == {0, 1, 2, 3}
    assert np.array_equal(shards, shard_of(ids[::-1], 4)[::-1])  # depends on the id, not its position
    assert np.array_equal(shard_of(ids[:100], 4), shards[:100])  # nor on the other rows
    assert sorted(np.concatenate([shard_positions(ids, k, 4) for k in range(4)])) == list(range(10_000))
    assert np.bincount(shards).min() > 2_300  # roughly even
    assert sum(share_of_budget(10, k, 4) for k in range(4)) == 10
    with pytest.raises(ValueError, match="shard 4 is outside 0..3"):
        shard_positions(ids, 4, 4)


@pytest.fixture
def sharded_env(pipeline_env, monkeypatch, tmp_path):
    demo_slice(900).to_parquet(pipeline_env["SCALELLM_CORPUS"], index=False)
    monkeypatch.setenv("SCALELLM_SHARDS", "3")
    monkeypatch.setenv("DAGSTER_HOME", str(ensure_dagster_home(tmp_path / "dagster_home")))
    return pipeline_env


def _predictions(db: str) -> pd.DataFrame:
    rows = query(db, "SELECT id, label, source, confidence FROM topic.predictions ORDER BY id")
    return pd.DataFrame(rows, columns=["id", "label", "source", "confidence"])


def test_parallel_shard_runs_match_the_unsharded_pipeline(sharded_env, monkeypatch, tmp_path):
    """Shard runs in two worker processes at once (no DuckDB lock failure) give exactly the unsharded answers."""
    phases = run_sharded(workers=2, log_level="WARNING")
    assert [p.job for p in phases] == ["scalellm_prepare", "scalellm_embed_shard", "scalellm_teach",
                                       "scalellm_predict_shard"]
    assert all(p.success for p in phases)
    assert [len(p.runs) for p in phases] == [1, 3, 1, 3]
    db = sharded_env["SCALELLM_DUCKDB_PATH"]
    assert query(db, "SELECT data_type FROM information_schema.columns "
                     "WHERE table_name = 'embeddings' AND column_name = 'vector'") == [("FLOAT[64]",)]
    assert query(db, "SELECT table_type FROM information_schema.tables WHERE table_name = 'embeddings'") == [("VIEW",)]
    with DagsterInstance.get() as instance:
        evaluations = [e.asset_check_evaluation_data for run in instance.get_runs()
                       for e in _check_events(instance, run.run_id)]
        per_shard = instance.get_materialized_partitions(AssetKey(["topic", "predictions"]))
    assert len(evaluations) >= 2 * 3 + 1 and all(e.passed for e in evaluations)
    assert per_shard == {"000", "001", "002"}
    sharded = _predictions(db)

    monkeypatch.setenv("SCALELLM_SHARDS", "0")
    monkeypatch.setenv("SCALELLM_DUCKDB_PATH", str(tmp_path / "flat.duckdb"))
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
    flat = _predictions(str(tmp_path / "flat.duckdb"))
    assert len(sharded) == len(flat) == 900
    pd.testing.assert_frame_equal(sharded, flat, check_exact=False, atol=1e-6)


def _check_events(instance: DagsterInstance, run_id: str):
    return [e.dagster_event for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]


def test_a_refresh_embeds_only_the_new_rows_of_each_shard(sharded_env):
    assert all(p.success for p in run_sharded(workers=1, log_level="WARNING"))
    corpus = pd.read_parquet(sharded_env["SCALELLM_CORPUS"])
    extra = demo_slice(1000, seed=7)
    extra = extra[~extra["id"].isin(corpus["id"])].head(60)
    pd.concat([corpus, extra]).to_parquet(sharded_env["SCALELLM_CORPUS"], index=False)
    phases = run_sharded(workers=1, log_level="WARNING")
    assert all(p.success for p in phases)
    with DagsterInstance.get() as instance:
        records = instance.fetch_materializations(AssetKey("embeddings"), limit=100).records
    computed = {}
    for key in ("000", "001", "002"):
        latest = max((r for r in records if r.partition_key == key), key=lambda r: r.storage_id)
        computed[key] = latest.asset_materialization.metadata["rows_computed"].value
    expected = np.bincount(shard_of(extra["id"], 3), minlength=3)
    assert [computed[k] for k in ("000", "001", "002")] == expected.tolist()
    db = sharded_env["SCALELLM_DUCKDB_PATH"]
    assert query(db, "SELECT count(*) FROM topic.predictions")[0][0] == len(corpus) + len(extra)
