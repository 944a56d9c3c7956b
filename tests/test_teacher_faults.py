"""What real endpoints do, against the project's fault-injecting server: garbled 200s, dropped connections,
bare 429s, refused keys, near-miss labels, answers without a label, servers with other structured-output forms."""

from __future__ import annotations

import pytest

from scalellm_dagster.teachers.base import TeacherFatalError
from tests.fake_openai import FakeOpenAI
from tests.test_openai_teacher import ROWS, MemoryCache, rule, run


@pytest.mark.parametrize("position", [0, 2])  # the structured-output probe, and an ordinary request
@pytest.mark.parametrize("fault", ["html", "cut_json", "off_schema", "empty_choices", "drop", "503", "429_bare"])
def test_a_garbled_or_failed_reply_is_retried_and_billed_once(fault, position):
    with FakeOpenAI(rule) as server:
        server.faults = [None] * position + [fault]
        cache = MemoryCache()
        out, stats = run(server, cache, retries=3, concurrency=2)
        http_requests = len(server.chat_requests())
    assert out["valid"].all() and stats.failed_requests == 0
    assert http_requests == 6  # 5 batches + 1 retry
    assert stats.requests == len(cache.ledger) == 5 and sum(r["rows_answered"] for r in cache.ledger) == 40


def test_a_reply_hanging_past_the_timeout_is_retried():
    with FakeOpenAI(rule) as server:
        server.faults = [None, "hang"]
        out, stats = run(server, MemoryCache(), timeout=1.0, retries=2, concurrency=2)
    assert out["valid"].all() and stats.requests == 5


def test_answers_without_a_label_are_not_answers_they_are_asked_again():
    with FakeOpenAI(rule) as server:
        server.faults = ["no_label"]
        cache = MemoryCache()
        out, stats = run(server, cache, concurrency=1)
    assert out["valid"].all() and "None" not in set(out["raw_answer"])
    assert stats.requests == 6  # the label-less batch is asked again
    assert sum(r["rows_answered"] for r in cache.ledger) == 40  # the ledger books what was delivered, not asked
    assert [r["rows_answered"] for r in cache.ledger][0] == 0


def test_near_miss_labels_are_accepted_as_normalised_with_the_raw_text_kept():
    with FakeOpenAI(rule) as server:
        server.faults = ["case"]  # "  POS " for "pos"
        out, stats = run(server, MemoryCache(), concurrency=1)
    assert out["valid"].all() and (out["teacher_label"] == ROWS["text"].map(rule)).all()
    assert stats.normalised == 8
    assert set(out.head(8)["raw_answer"]) <= {"  POS ", "  NEG "}


def test_labels_outside_the_set_stay_invalid_with_their_raw_text():
    with FakeOpenAI(rule) as server:
        server.faults = ["out_of_set"]
        out, _ = run(server, MemoryCache(), concurrency=1)
    assert (~out.head(8)["valid"]).all() and (out.head(8)["raw_answer"] == "maybe").all()
    assert out.iloc[8:]["valid"].all()


def test_a_refused_key_stops_at_once_with_one_line_saying_what_to_do():
    with FakeOpenAI(rule, api_key="sk-right") as server:
        cache = MemoryCache()
        with pytest.raises(TeacherFatalError) as info:
            run(server, cache, retries=4)
        assert len(server.chat_requests()) == 1  # no retry, no further request
    message = str(info.value)
    assert "\n" not in message and "retr" not in message
    assert "HTTP 401 Incorrect API key provided" in message and "set OPENAI_API_KEY" in message
    assert server.base_url in message and cache.answers == {}


def test_llama_cpp_servers_get_json_object_with_a_schema_after_one_probe():
    with FakeOpenAI(rule, schema_support="llama_cpp") as server:
        cache = MemoryCache()
        out, stats = run(server, cache, retries=4)
        chats = server.chat_requests()
    assert out["valid"].all()
    assert len(chats) == 6  # one rejected probe (HTTP 500 naming response_format, not retried), then 5 batches
    assert chats[0]["response_format"]["type"] == "json_schema"
    accepted = chats[1]["response_format"]
    assert accepted["type"] == "json_object"
    answers = accepted["schema"]["properties"]["answers"]
    assert answers["maxItems"] == 8 and answers["items"] is False  # one item per row, each row's id in its place
    assert [item["properties"]["id"]["const"] for item in answers["prefixItems"]] == [str(i) for i in range(8)]
    assert {r["response_format"] for r in cache.ledger} == {"json_object+schema"}
    assert stats.response_formats == {"json_object+schema"}
    assert any("rejected response_format json_schema (HTTP 500)" in n for n in stats.notes)


def test_every_request_bounds_its_completion_tokens():
    with FakeOpenAI(rule) as server:
        run(server, MemoryCache())
        chats = server.chat_requests()
    # 8 answers of ~30 characters: a bound of a few hundred tokens, not the model's default of thousands
    assert all(50 < c["max_tokens"] < 300 for c in chats)


def test_a_teacher_with_one_form_never_probes():
    from scalellm_dagster.openai_client import make_client
    from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
    from scalellm_dagster.teachers.runner import label_with_cache
    from tests.test_openai_teacher import TASK

    with FakeOpenAI(rule, schema_support="llama_cpp") as server:
        teacher = OpenAIChatTeacher(TASK, make_client(server.base_url, "k", 5, 2), "m", forms=("json_object+schema",))
        cache = MemoryCache()
        out, _ = label_with_cache(teacher, ROWS, cache.lookup, cache.store, batch_size=8, concurrency=2)
        assert len(server.chat_requests()) == 5 and out["valid"].all()
