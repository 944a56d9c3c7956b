"""The `openai` teacher against a local OpenAI-compatible server: batching, fallbacks, faults, the cache."""

from __future__ import annotations

import pandas as pd
import pytest

from scalellm_dagster.flow import MemoryCache
from scalellm_dagster.openai_client import make_client
from scalellm_dagster.tasks_config import parse_task
from scalellm_dagster.teachers.base import TeacherError
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.teachers.runner import label_with_cache
from tests.fake_openai import FakeOpenAI

TASK = parse_task(
    {
        "name": "sentiment",
        "instruction": "Is the review positive or negative?",
        "budget": 10,
        "labels": {"pos": "positive", "neg": "negative"},
    }
)


def rule(text: str) -> str:
    if "weird" in text:
        return "neutral-ish"  # outside the label set
    return "pos" if "good" in text else "neg"


ROWS = pd.DataFrame({"id": range(40), "text": [f"review {i} is {'good' if i % 3 else 'bad'}" for i in range(40)]})


def teacher_for(server: FakeOpenAI, timeout=5.0, retries=3) -> OpenAIChatTeacher:
    client = make_client(server.base_url, "sk-test", timeout, retries)
    return OpenAIChatTeacher(TASK, client, "test-model", price_in_per_mtok=1.0, price_out_per_mtok=2.0)


def run(server, cache, rows=ROWS, batch_size=8, concurrency=4, **kw):
    return label_with_cache(
        teacher_for(server, **kw), rows, cache.lookup, cache.store, batch_size=batch_size, concurrency=concurrency
    )


def test_batches_with_json_schema_and_labels_every_row():
    with FakeOpenAI(rule) as server:
        cache = MemoryCache()
        out, stats = run(server, cache)
        chats = server.chat_requests()
    assert len(chats) == 5 and stats.requests == 5  # 40 rows / 8 per request
    schema = chats[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answers"]["items"]["properties"]["label"]["enum"] == ["pos", "neg"]
    assert out["valid"].all()
    assert (out["teacher_label"] == ROWS["text"].map(rule)).all()
    assert stats.cost_usd > 0 and len(cache.ledger) == 5


def test_rerun_is_answered_from_cache_at_zero_cost():
    with FakeOpenAI(rule) as server:
        cache = MemoryCache()
        run(server, cache)
        first_requests = len(server.chat_requests())
        out, stats = run(server, cache)
        assert len(server.chat_requests()) == first_requests
    assert stats.requests == 0 and stats.cost_usd == 0 and stats.cache_hits == 40
    assert out["from_cache"].all() and out["valid"].all()


def test_server_without_json_schema_falls_back_to_plain_prompt():
    with FakeOpenAI(rule, supports_schema=False) as server:
        out, stats = run(server, MemoryCache())
    assert out["valid"].all()
    assert any("json_schema" in n for n in stats.notes)


@pytest.mark.parametrize("fault", ["429", "500", "slow"])
def test_transient_faults_are_retried_and_billed_once(fault):
    with FakeOpenAI(rule) as server:
        server.faults = [fault]
        cache = MemoryCache()
        out, stats = run(server, cache, timeout=0.8, retries=3)
        http_requests = len(server.chat_requests())
    assert out["valid"].all()
    assert http_requests == 6  # 5 batches + 1 retry
    assert stats.requests == len(cache.ledger) == 5  # the failed attempt is not in the ledger


@pytest.mark.parametrize("fault", ["malformed", "truncate"])
def test_partial_answers_lose_only_the_missing_rows_which_are_asked_again(fault):
    with FakeOpenAI(rule) as server:
        server.faults = [fault]
        out, stats = run(server, MemoryCache(), concurrency=1)
    assert out["valid"].all() and stats.unanswered == 0
    assert stats.requests == 6  # one extra request for the rows the broken answer left out


def test_labels_outside_the_set_are_kept_as_invalid_not_coerced():
    rows = ROWS.copy()
    rows.loc[[1, 2], "text"] = ["a weird good review", "weird and bad"]
    with FakeOpenAI(rule) as server:
        out, _ = run(server, MemoryCache(), rows=rows)
    invalid = out[~out["valid"]]
    assert list(invalid["id"]) == [1, 2]
    assert invalid["teacher_label"].isna().all() and (invalid["raw_answer"] == "neutral-ish").all()


def test_retry_after_is_honoured():
    import time

    with FakeOpenAI(rule) as server:
        server.faults = ["429"]  # Retry-After: 0.2
        start = time.perf_counter()
        out, _ = run(server, MemoryCache(), rows=ROWS.head(8), concurrency=1)
        assert time.perf_counter() - start >= 0.2
    assert out["valid"].all()


def test_a_failed_request_leaves_its_rows_for_the_rerun_and_keeps_what_was_paid_for():
    with FakeOpenAI(rule) as server:
        cache = MemoryCache()
        server.faults = [None, None, "500", "500", "500"]  # third request fails on every retry
        out, stats = run(server, cache, concurrency=1, retries=2)
        assert stats.failed_requests == 1 and stats.unanswered == 8  # 1 of 5 requests: within the 20% tolerated
        assert out["raw_answer"].isna().sum() == 8 and not out.loc[out["raw_answer"].isna(), "valid"].any()
        paid = len(cache.answers)
        assert paid == 32 and len(cache.ledger) == 4
        before = len(server.chat_requests())
        out, stats = run(server, cache, concurrency=1)
        assert stats.cache_hits == 32 and stats.asked == 8
        assert len(server.chat_requests()) - before == 1
    assert out["valid"].all()


def test_an_outage_stops_the_run_clearly_and_keeps_what_was_paid_for():
    with FakeOpenAI(rule) as server:
        cache = MemoryCache()
        server.faults = [None] + ["500"] * 100  # the endpoint goes down after the first request
        with pytest.raises(
            TeacherError,
            match=r"2 of 5 teacher requests failed, more than the 20% a run tolerates "
            r"\(first: .*boom \(after 1 retries\)\); 8 answers from this round "
            r"are cached; a rerun asks only the 32 other rows",
        ):
            run(server, cache, concurrency=1, retries=1)
        assert len(cache.answers) == 8 and len(cache.ledger) == 1
