"""The row-parallel steps on a real Dask cluster: `dask scheduler` and two `dask worker --nthreads 1` processes on
127.0.0.1, started from the command line. The graph's results equal the in-process run's row for row; a worker
killed mid-run changes nothing but the time; a refresh sends only its new rows; a cluster that cannot be reached, or
a part that cannot be read, is one clear error and publishes nothing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster import DagsterInstance

from scalellm_dagster.cli.failures import failure_lines
from scalellm_dagster.cluster.parts import PartError, embed_part, join, split_rows
from tests.conftest import demo_slice
from tests.dask_cluster import dask_cluster
from tests.pipeline_helpers import query, run_pipeline

PART_ROWS = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as running:
        yield running


@pytest.fixture
def on_cluster(pipeline_env, cluster, monkeypatch):
    monkeypatch.setenv("SCALELLM_DASK_SCHEDULER", str(cluster.scheduler_file))
    monkeypatch.setenv("SCALELLM_DASK_PART_ROWS", str(PART_ROWS))
    return pipeline_env


def _vectors(db: str) -> pd.DataFrame:
    rows = query(db, "SELECT id, vector FROM embeddings ORDER BY id")
    return pd.DataFrame({"id": [r[0] for r in rows], "vector": [np.asarray(r[1]) for r in rows]})


def _predictions(db: str) -> list:
    return query(db, "SELECT id, label, source FROM topic.predictions ORDER BY id")


def _embedding_meta(result) -> dict:
    event = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "embeddings"]
    return {k: v.value for k, v in event[0].materialization.metadata.items()}


def _in_process_run(tmp_path, monkeypatch) -> str:
    db = str(tmp_path / "in_process.duckdb")
    with monkeypatch.context() as m:
        m.setenv("SCALELLM_DUCKDB_PATH", db)
        m.delenv("SCALELLM_DASK_SCHEDULER")
        with DagsterInstance.ephemeral() as instance:
            assert run_pipeline(instance).success
    return db


def _same_results(db: str, reference: str) -> None:
    ours, theirs = _vectors(db), _vectors(reference)
    assert ours["id"].tolist() == theirs["id"].tolist()
    assert np.abs(np.stack(ours["vector"]) - np.stack(theirs["vector"])).max() < 1e-5
    assert _predictions(db) == _predictions(reference)


def test_the_graph_on_the_cluster_equals_the_in_process_run(on_cluster, cluster, tmp_path, monkeypatch):
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    assert result.success
    meta = _embedding_meta(result)
    assert meta["cluster_scheduler"] == str(cluster.scheduler_file) and meta["cluster_parts"] == 7  # 400 rows / 60
    assert set(meta["cluster_parts_per_worker"]) == {"w1", "w2"}  # both workers embedded parts
    assert meta["cluster_seconds_per_part_max"] > 0 and meta["driver_ingest_seconds"] >= 0
    predicted = [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "topic/predictions"
    ][0].materialization.metadata
    assert predicted["cluster_parts"].value == 7 and set(predicted["cluster_parts_per_worker"].value) == {"w1", "w2"}
    _same_results(on_cluster["SCALELLM_DUCKDB_PATH"], _in_process_run(tmp_path, monkeypatch))
    parts = tmp_path / "wh.parts"
    assert not parts.exists() or not any(parts.iterdir())  # a run's parts go with it
    # The warehouse took the parts in: it is one self-contained file that reads the same wherever it is copied.
    moved = tmp_path / "elsewhere" / "copy.duckdb"
    moved.parent.mkdir()
    (tmp_path / "wh.duckdb").rename(moved)
    assert query(str(moved), "SELECT count(*) FROM embeddings")[0][0] == 400


def test_a_worker_killed_while_embedding_changes_nothing_but_the_time(on_cluster, cluster, tmp_path, monkeypatch):
    from scalellm_dagster.resources.embedder import EmbedderResource
    from tests.slow_embedder import SlowLsa

    monkeypatch.setenv("SCALELLM_EMBEDDER", "lsa")  # SlowLsa stands in for LSA
    monkeypatch.setattr(EmbedderResource, "build", lambda self: SlowLsa(dim=self.dim, seed=self.seed))
    outcome = {}

    def run() -> None:
        with DagsterInstance.ephemeral() as instance:
            outcome["result"] = run_pipeline(instance)

    runner = threading.Thread(target=run)
    runner.start()
    out = tmp_path / "wh.parts"
    deadline = time.monotonic() + 120
    while not list(out.glob("*/*/out/out-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    cluster.kill_worker("w1")  # SIGKILL, nanny and worker, mid-run
    assert runner.is_alive()  # the run was still going: parts were left to embed or to take in
    runner.join(300)
    try:
        result = outcome["result"]
        assert result.success
        assert sum(_embedding_meta(result)["cluster_parts_per_worker"].values()) == 7
        monkeypatch.setattr(EmbedderResource, "build", lambda self: SlowLsa(dim=self.dim, seed=self.seed))
        _same_results(on_cluster["SCALELLM_DUCKDB_PATH"], _in_process_run(tmp_path, monkeypatch))
    finally:
        cluster.start_worker("w1")
        cluster._wait(lambda: len(cluster.worker_names()) == 2, 60, "the restarted worker")


def _corpus_check(db_env: dict, selection) -> dict:
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance, selection)
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "corpus_rows_valid")
    return {"passed": evaluation.passed, **{k: v.value for k, v in evaluation.metadata.items()}}


def test_the_corpus_checks_text_scan_runs_part_by_part_on_the_cluster(on_cluster, small_corpus, monkeypatch):
    from dagster import AssetSelection

    rows = demo_slice(400)
    rows.loc[[7, 333], "text"] = "x" * 600  # over the length bound, in two different parts
    rows.to_parquet(small_corpus, index=False)
    monkeypatch.setenv("SCALELLM_MAX_TEXT_CHARS", "500")
    selection = AssetSelection.assets("corpus")
    on = _corpus_check(on_cluster, selection)
    assert not on["passed"] and on["cluster_parts"] == 7 and set(on["cluster_parts_per_worker"]) == {"w1", "w2"}
    assert on["failed_expectations"] == [
        "expect_column_value_lengths_to_be_between(text): expected between 1 and 500; 2 unexpected of 400; e.g. "
        f"{'x' * 40}, {'x' * 40}; ids {rows.loc[7, 'id']}, {rows.loc[333, 'id']}"
    ]
    monkeypatch.delenv("SCALELLM_DASK_SCHEDULER")
    rows.to_parquet(small_corpus, index=False)  # written again: an unchanged source would carry the verdict over
    in_process = _corpus_check(on_cluster, selection)
    assert in_process["ran_on"] == "in process"
    assert in_process["failed_expectations"] == on["failed_expectations"]
    assert in_process["expectations_evaluated"] == on["expectations_evaluated"] == 6


def test_a_refresh_sends_only_its_new_rows_to_the_cluster(on_cluster, small_corpus):
    rows = demo_slice(450)
    rows.iloc[:400].to_parquet(small_corpus, index=False)
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        rows.to_parquet(small_corpus, index=False)  # 50 new rows
        result = run_pipeline(instance)
    assert result.success
    meta = _embedding_meta(result)
    assert meta["rows_computed"] == 50 and meta["cluster_parts"] == 1


def test_an_unreachable_scheduler_is_one_line_before_any_work(pipeline_env, monkeypatch):
    monkeypatch.setenv("SCALELLM_DASK_SCHEDULER", "tcp://127.0.0.1:9")
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
    assert not result.success
    lines = failure_lines(result.all_events)
    assert len(lines) == 1 and lines[0].startswith(
        "embeddings: cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 10s ("
    )
    assert lines[0].endswith("); start it with `dask scheduler`, or unset SCALELLM_DASK_SCHEDULER to run in process")
    assert (
        query(
            pipeline_env["SCALELLM_DUCKDB_PATH"],
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'embeddings'",
        )[0][0]
        == 0
    )


def test_a_part_that_cannot_be_read_fails_naming_it_and_leaves_no_half_file(cluster, tmp_path):
    from distributed import Client

    from scalellm_dagster.cluster.dask_run import run_parts
    from scalellm_dagster.embedders.static import StaticEmbedder
    from scalellm_dagster.embedding_arrow import embedding_schema

    rows = demo_slice(120)[["id", "text"]].assign(text_hash=lambda d: d["text"].str.len().astype(str))
    paths = split_rows(rows, join(str(tmp_path), "in"), 60)
    (tmp_path / "in" / "in-00001.parquet").write_bytes(b"PAR1 not really")
    outs = [join(str(tmp_path), "out", f"out-{n}.parquet") for n in range(2)]
    with (
        Client(scheduler_file=str(cluster.scheduler_file), timeout="10s") as client,
        pytest.raises(PartError, match=r"part .*in-00001.parquet cannot be read"),
    ):
        run_parts(
            client,
            embed_part,
            paths,
            outs,
            StaticEmbedder(),
            lambda _m: None,
            schema=embedding_schema(pa.int64(), 256),
            version="v",
        )
    time.sleep(1)
    leftovers = [p.name for p in (tmp_path / "out").glob("*")] if (tmp_path / "out").exists() else []
    assert all(name.endswith(".parquet") and ".partial-" not in name for name in leftovers)
