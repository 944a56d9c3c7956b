"""A whole run with SCALELLM_TEACHER_MODE=batch against the local server: the sample, the cascade and an audit
through batches, the same answers and predictions as the synchronous run, at half the cost; a killed run resumes its
batch rather than submitting it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from dagster import DagsterInstance

from tests.conftest import SMALL_TASKS, corpus_folder
from tests.fake_openai import FakeOpenAI
from tests.pipeline_helpers import query, run_pipeline

ANSWERS = "SELECT id, teacher_label, raw_answer FROM topic.labeled_sample ORDER BY id"
PREDICTIONS = "SELECT id, label, source FROM topic.predictions ORDER BY id"
AUDIT = "SELECT count(*), sum(audited), sum(agreed), bool_and(passed) FROM topic.audit_log"


def _run_twice(pipeline_env, tmp_path, monkeypatch, server, mode: str, gold_rows):
    """The first run, then a refresh bringing 100 new rows (audited); returns the warehouse's path."""
    folder = tmp_path / f"drop-{mode}"
    folder.mkdir()
    gold_rows.iloc[:400].to_parquet(folder / "part-000.parquet", index=False)
    db = str(tmp_path / f"{mode}.duckdb")
    monkeypatch.setenv("SCALELLM_CORPUS", str(folder))
    monkeypatch.setenv("SCALELLM_DUCKDB_PATH", db)
    monkeypatch.setenv("SCALELLM_TEACHER_MODE", mode)
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        gold_rows.iloc[400:].to_parquet(folder / "part-001.parquet", index=False)
        assert run_pipeline(instance).success
    return db


def test_a_batch_run_gives_the_synchronous_answers_and_predictions_at_half_the_cost(
    pipeline_env, tmp_path, monkeypatch, tasks_file
):
    tasks_file.write_text(textwrap.dedent(SMALL_TASKS) + "    cascade_budget: 40\n    audit_rows: 30\n")
    _, rows = corpus_folder(tmp_path, monkeypatch, total=500)
    gold = dict(zip(rows["text"], rows["topic"]))
    monkeypatch.setenv("SCALELLM_TEACHER", "openai")
    monkeypatch.setenv("SCALELLM_BATCH_MIN_ROWS", "1")
    monkeypatch.setenv("SCALELLM_BATCH_POLL_SECONDS", "0.05")
    with FakeOpenAI(lambda text: gold[text]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        sync_db = _run_twice(pipeline_env, tmp_path, monkeypatch, server, "sync", rows)
        assert not server.batches
        sync_requests = len(server.chat_requests())
        batch_db = _run_twice(pipeline_env, tmp_path, monkeypatch, server, "batch", rows)
        assert len(server.chat_requests()) == sync_requests  # not one synchronous request in batch mode
        batches = list(server.batches.values())

    assert query(batch_db, ANSWERS) == query(sync_db, ANSWERS)
    assert query(batch_db, PREDICTIONS) == query(sync_db, PREDICTIONS)
    assert query(batch_db, AUDIT) == query(sync_db, AUDIT) and query(batch_db, AUDIT)[0][0] == 2
    # the sample (120 rows), the cascade (40) and the refresh's cascade and audit, each through its batch
    assert len(batches) == 4 and sum(b["request_counts"]["total"] for b in batches) == sync_requests
    ledger = "SELECT count(*), sum(cost_usd), sum(prompt_tokens), count(batch_id) FROM scalellm_cache.teacher_ledger"
    (n_sync, cost_sync, tokens_sync, _), (n_batch, cost_batch, tokens_batch, with_batch) = (
        query(sync_db, ledger)[0],
        query(batch_db, ledger)[0],
    )
    assert n_batch == n_sync == with_batch and tokens_batch == tokens_sync
    assert cost_batch == pytest.approx(cost_sync / 2)
    assert query(batch_db, "SELECT DISTINCT status FROM scalellm_cache.teacher_batches") == [("completed",)]


KILLED_RUN = """
import sys
from dagster import DagsterInstance
from tests.pipeline_helpers import run_pipeline
with DagsterInstance.ephemeral() as instance:
    run_pipeline(instance)
"""


def test_a_run_killed_while_its_batch_runs_is_resumed_without_submitting_again(
    pipeline_env, tmp_path, monkeypatch, small_corpus
):
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    import pandas as pd

    gold = dict(zip(*pd.read_parquet(small_corpus)[["text", "topic"]].T.values))
    with FakeOpenAI(lambda text: gold[text]) as server:
        server.hold_batches = True
        env = {
            **os.environ,
            "SCALELLM_TEACHER": "openai",
            "OPENAI_BASE_URL": server.base_url,
            "SCALELLM_TEACHER_MODE": "batch",
            "SCALELLM_BATCH_POLL_SECONDS": "0.05",
        }
        child = subprocess.Popen([sys.executable, "-c", KILLED_RUN], env=env, cwd=os.getcwd())
        deadline = time.monotonic() + 120
        while not server.batches and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
        time.sleep(1.0)  # it is polling the batch now
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert list(server.batches) == ["batch_1"]
        assert query(db, "SELECT batch_id, status FROM scalellm_cache.teacher_batches") == [("batch_1", None)]
        server.hold_batches = False
        for key, value in env.items():
            if key.startswith(("SCALELLM_", "OPENAI_")):
                monkeypatch.setenv(key, value)
        with DagsterInstance.ephemeral() as instance:
            result = run_pipeline(instance)
            assert result.success
        assert list(server.batches) == ["batch_1"]  # one submission, answered to the run that resumed it
    meta = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "topic/labeled_sample"
    )
    assert meta["batches_resumed"].value == 1 and meta["teacher_batches"].value == "batch_1"
    assert query(db, "SELECT count(*) FILTER (WHERE valid) FROM topic.labeled_sample")[0][0] == 120
    assert query(db, "SELECT status FROM scalellm_cache.teacher_batches") == [("completed",)]


def test_an_endpoint_without_batches_fails_the_run_with_the_line_that_says_what_to_set(
    pipeline_env, monkeypatch, small_corpus
):
    import pandas as pd

    from scalellm_dagster.cli.failures import failure_lines

    gold = dict(zip(*pd.read_parquet(small_corpus)[["text", "topic"]].T.values))
    with FakeOpenAI(lambda text: gold[text], supports_batches=False) as server:
        monkeypatch.setenv("SCALELLM_TEACHER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("SCALELLM_TEACHER_MODE", "batch")
        with DagsterInstance.ephemeral() as instance:
            result = run_pipeline(instance)
    assert not result.success
    assert failure_lines(result.all_events) == [
        f"topic/labeled_sample: teacher endpoint {server.base_url} has no Batch API (POST /files answered HTTP 404): "
        "set SCALELLM_TEACHER_MODE=sync, or SCALELLM_BATCH_FALLBACK=sync to ask such endpoints synchronously"
    ]
