"""Several tasks' questions in one request (SCALELLM_SHARED_REQUESTS): the joint prompt and its parser, the flow
against the fault server (answers cached per task exactly as a single-task request's, ledgers that add up, a failed
joint request leaving its rows to the tasks), and the graph with the simulated teacher."""

from __future__ import annotations

import json

import pandas as pd
from dagster import AssetKey, DagsterInstance

from scalellm_dagster.flow import MemoryCache
from scalellm_dagster.flow.shared_requests import ask_shared, shared_rows
from scalellm_dagster.openai_client import make_client
from scalellm_dagster.tasks_config import parse_task
from scalellm_dagster.teachers.multi_task import JointChatTeacher, joint_schema, joint_system_prompt, parse_joint
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.teachers.runner import label_with_cache
from tests.conftest import SECOND_TASK
from tests.fake_openai import FakeOpenAI
from tests.pipeline_helpers import query, run_pipeline

SENTIMENT = parse_task(
    {"name": "sentiment", "instruction": "Is the review positive?", "budget": 10, "labels": ["pos", "neg"]}
)
TOPIC = parse_task(
    {"name": "topic", "instruction": "What is it about?", "budget": 10, "labels": {"food": "food", "film": "a film"}}
)
ROWS = pd.DataFrame(
    {
        "id": range(40),
        "text": [f"{i}: the {'film' if i % 2 else 'food'} was {'good' if i % 3 else 'bad'}" for i in range(40)],
    }
)


def answer(text: str, question: str = "sentiment") -> str:
    if question == "topic":
        return "film" if "film" in text else "food"
    return "pos" if "good" in text else "neg"


def teachers(server: FakeOpenAI, retries: int = 3):
    client = make_client(server.base_url, "sk-test", 5.0, retries)
    single = {t.name: OpenAIChatTeacher(t, client, "test-model", 1.0, 2.0) for t in (SENTIMENT, TOPIC)}
    return single, JointChatTeacher([SENTIMENT, TOPIC], single["sentiment"])


def test_joint_prompt_names_every_question_and_the_parser_reads_each():
    prompt = joint_system_prompt([SENTIMENT, TOPIC])
    assert 'Question "sentiment": Is the review positive?' in prompt and "- film: a film" in prompt
    schema = joint_schema([SENTIMENT, TOPIC], ["1", "2"])["schema"]["properties"]["answers"]["items"]
    assert schema["required"] == ["id", "sentiment", "topic"] and schema["properties"]["topic"]["enum"] == [
        "food",
        "film",
    ]
    reply = json.dumps(
        {"answers": [{"id": "1", "sentiment": "POS", "topic": "film"}, {"id": "2", "sentiment": "meh"}, {"id": "9"}]}
    )
    parsed = parse_joint(f"Sure: {reply}", ["1", "2"], [SENTIMENT, TOPIC])
    assert parsed["sentiment"]["1"].label == "pos" and parsed["sentiment"]["1"].raw == "POS"  # normalised
    assert parsed["sentiment"]["2"].label is None and parsed["sentiment"]["2"].raw == "meh"  # kept invalid
    assert parsed["topic"] == {"1": parsed["topic"]["1"]}  # row 2 left topic unanswered: asked again by topic


def test_shared_rows_are_answered_once_for_every_task_and_reused_by_each_task_alone():
    with FakeOpenAI(answer) as server:
        single, joint = teachers(server)
        caches = {"sentiment": MemoryCache(), "topic": MemoryCache()}
        outcome = ask_shared(joint, ROWS, caches, batch_size=8, concurrency=2)
        joint_requests = len(server.chat_requests())
        assert outcome.requests == joint_requests == 5 and outcome.failed_requests == 0
        assert outcome.valid == {"sentiment": 40, "topic": 40}
        # each ledger books its share; together they are what the joint requests cost
        for name in caches:
            assert [line["shared_with"] for line in caches[name].ledger] == [
                {"sentiment": "topic", "topic": "sentiment"}[name]
            ] * 5
        assert sum(line["prompt_tokens"] for c in caches.values() for line in c.ledger) == outcome.prompt_tokens
        # a task asked alone afterwards finds every row answered: no request, the same labels as asking it alone
        for task in (SENTIMENT, TOPIC):
            out, stats = label_with_cache(single[task.name], ROWS, caches[task.name].lookup, caches[task.name].store)
            assert stats.requests == 0 and stats.cache_hits == 40
            assert (out["teacher_label"] == ROWS["text"].map(lambda t, q=task.name: answer(t, q))).all()
        assert len(server.chat_requests()) == joint_requests
        # and what it cost against asking each task separately
        separate = FakeOpenAI(answer)
        with separate:
            s_single, _ = teachers(separate)
            for task in (SENTIMENT, TOPIC):
                cache = MemoryCache()
                label_with_cache(s_single[task.name], ROWS, cache.lookup, cache.store, batch_size=8)
            assert len(separate.chat_requests()) == 10  # twice the requests for the same rows


def test_a_failed_joint_request_leaves_its_rows_to_the_tasks_nothing_lost_nothing_paid_twice():
    with FakeOpenAI(answer) as server:
        single, joint = teachers(server, retries=0)
        server.faults = [None, "500"]  # the second joint request fails, no retry (the first is the form probe)
        caches = {"sentiment": MemoryCache(), "topic": MemoryCache()}
        outcome = ask_shared(joint, ROWS, caches, batch_size=8, concurrency=1)
        assert outcome.failed_requests == 1 and outcome.requests == 4
        for task in (SENTIMENT, TOPIC):
            out, stats = label_with_cache(single[task.name], ROWS, caches[task.name].lookup, caches[task.name].store)
            assert stats.cache_hits == 32 and stats.asked == 8 and stats.requests == 1
            assert out.loc[out["from_cache"], "valid"].all() and out["raw_answer"].notna().all()
    # rows answered for one task already are left to the tasks (no joint request pays for them again)
    caches["sentiment"].answers.clear()
    with FakeOpenAI(answer) as server:
        _, joint = teachers(server)
        again = ask_shared(joint, ROWS, caches, batch_size=8, concurrency=1)
        assert again.asked == 0 and again.already_answered == 40 and not server.chat_requests()


def test_shared_rows_are_those_in_two_or_more_samples():
    assert list(shared_rows({"a": pd.Series([1, 2, 3]), "b": pd.Series([3, 2, 9]), "c": pd.Series([9])})) == [2, 3, 9]


def test_graph_with_shared_requests_asks_each_shared_row_once(pipeline_env, tasks_file, monkeypatch):
    tasks_file.write_text(tasks_file.read_text() + SECOND_TASK)
    monkeypatch.setenv("SCALELLM_SHARED_REQUESTS", "true")
    db = pipeline_env["SCALELLM_DUCKDB_PATH"]
    with DagsterInstance.ephemeral() as instance:
        assert run_pipeline(instance).success
        meta = instance.get_latest_materialization_event(AssetKey("shared_teacher_requests")).asset_materialization
        shared = meta.metadata["rows_asked_jointly"].value
        assert shared == 60  # is_card's 60 rows are all in topic's 120 (same seed, random sampling)
        assert meta.metadata["requests"].value == 6
        # both models kept on a rerun: no sample is drawn, so nothing is asked jointly either
        assert run_pipeline(instance).success
        kept = instance.get_latest_materialization_event(AssetKey("shared_teacher_requests")).asset_materialization
        assert kept.metadata["requests"].value == 0 and kept.metadata["tasks_drawing_a_sample"].value == 0
    by_task = dict(
        query(
            db,
            "SELECT task, sum(rows_answered) FROM scalellm_cache.teacher_ledger "
            "WHERE shared_with IS NOT NULL GROUP BY task",
        )
    )
    assert by_task == {"topic": 60, "is_card": 60}
    # is_card's sample came entirely from the shared requests; topic asked only its other 60 rows
    alone = dict(
        query(
            db,
            "SELECT task, coalesce(sum(rows_answered), 0) FROM scalellm_cache.teacher_ledger "
            "WHERE shared_with IS NULL GROUP BY task",
        )
    )
    assert alone.get("is_card", 0) == 0 and alone["topic"] == 60  # the first audit is a baseline: it asks nothing
