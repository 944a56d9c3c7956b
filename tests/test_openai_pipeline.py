"""The whole graph with the `openai` teacher and embedder against a local OpenAI-compatible server."""

from __future__ import annotations

import duckdb
from dagster import DagsterInstance
from dagster._serdes import serialize_value

from scalellm_dagster.assets.deployed_model import RETRAIN_TAG
from tests.conftest import demo_slice
from tests.fake_openai import FakeOpenAI
from tests.pipeline_helpers import query, run_pipeline

SECRET = "sk-test-DO-NOT-LEAK-8f3a2c"


def test_openai_teacher_and_embedder_end_to_end_without_leaking_the_key(pipeline_env, monkeypatch):
    gold = dict(zip(demo_slice(400)["text"], demo_slice(400)["topic"]))
    with FakeOpenAI(lambda text: gold[text]) as server:
        monkeypatch.setenv("SCALELLM_TEACHER", "openai")
        monkeypatch.setenv("SCALELLM_EMBEDDER", "openai")
        monkeypatch.setenv("SCALELLM_TEACHER_MODEL", "local-llm")
        monkeypatch.setenv("SCALELLM_EMBEDDING_MODEL", "local-embed")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        with DagsterInstance.ephemeral() as instance:
            result = run_pipeline(instance)
            assert result.success
            events = serialize_value([r for r in instance.all_logs(result.run_id)])
        chats = server.chat_requests()
        assert {h.get("authorization") for h in server.headers} == {f"Bearer {SECRET}"}

    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    assert query(db, "SELECT count(*), min(len(vector)) FROM embeddings")[0] == (400, 32)
    assert len(chats) == 12  # 120 sample rows, 10 per request (the first drift audit is a baseline: it asks nothing)
    assert query(db, "SELECT count(*) FILTER (WHERE valid), count(*) FROM topic.labeled_sample")[0] == (120, 120)
    assert query(db, "SELECT DISTINCT teacher FROM topic.labeled_sample")[0][0] == "openai:local-llm"
    agree = query(
        db,
        """SELECT avg(CASE WHEN s.teacher_label = c.topic THEN 1 ELSE 0 END)
                         FROM topic.labeled_sample s JOIN corpus c USING (id)""",
    )[0][0]
    assert agree == 1.0  # the local server answers with the gold label
    ledger = query(db, "SELECT count(*), sum(rows_answered), sum(prompt_tokens) FROM scalellm_cache.teacher_ledger")
    assert ledger[0][0] == 12 and ledger[0][1] == 120 and ledger[0][2] > 0  # the sample only: the audit is a baseline

    assert SECRET not in events
    with duckdb.connect(db, read_only=True) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        for schema, table in tables:
            text = conn.execute(f'SELECT * FROM "{schema}"."{table}"').df().to_csv()
            assert SECRET not in text, f"{schema}.{table} holds the API key"


def test_rerun_pays_nothing_for_answers_already_cached(pipeline_env, monkeypatch):
    gold = dict(zip(demo_slice(400)["text"], demo_slice(400)["topic"]))
    with FakeOpenAI(lambda text: gold[text]) as server:
        monkeypatch.setenv("SCALELLM_TEACHER", "openai")
        monkeypatch.setenv("SCALELLM_EMBEDDER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        with DagsterInstance.ephemeral() as instance:
            assert run_pipeline(instance).success
            first = len(server.requests)
            # a replacement on the same corpus draws the same sample again: every answer from the cache (a plain
            # rerun keeps the model and asks nothing at all)
            second = run_pipeline(instance, tags={RETRAIN_TAG: "all"})
            assert second.success
        assert len(server.requests) == first  # not one more request: chat answers and vectors are cached
    meta = [
        e for e in second.get_asset_materialization_events() if e.asset_key.to_user_string() == "topic/labeled_sample"
    ][0].materialization.metadata
    assert meta["cache_hits"].value == 120 and meta["cache_misses"].value == 0
    assert meta["cost_usd"].value == 0.0
    embed_meta = [e for e in second.get_asset_materialization_events() if e.asset_key.to_user_string() == "embeddings"][
        0
    ].materialization.metadata
    assert embed_meta["rows_reused"].value == 400 and embed_meta["rows_computed"].value == 0
