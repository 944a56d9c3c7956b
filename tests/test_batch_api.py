"""The Batch API teacher against the local OpenAI-compatible server: the same answers as the synchronous path at half
the price, resumed rather than resubmitted, and every way a batch can end."""

from __future__ import annotations

import pandas as pd
import pytest

from scalellm_dagster.core.text_hash import text_hash
from scalellm_dagster.flow import MemoryCache
from scalellm_dagster.teachers.base import TeacherFatalError
from scalellm_dagster.teachers.batch_api import (
    BatchCancelled,
    BatchClient,
    BatchOptions,
    BatchPending,
    BatchRound,
    MemoryBatchRegistry,
    jsonl_files,
)
from scalellm_dagster.teachers.runner import label_with_cache
from tests.fake_openai import FakeOpenAI
from tests.test_openai_teacher import ROWS, rule, teacher_for

FAST = BatchOptions(poll_seconds=0.01, wait_seconds=30, min_rows=1)


def ask(server, cache, registry, options=FAST, rows=ROWS, batch_size=8, log=None):
    teacher = teacher_for(server)
    batch = BatchRound(teacher, BatchClient(teacher.client, server.base_url), registry, options, log=log or print)
    out, stats = label_with_cache(teacher, rows, cache.lookup, cache.store, batch_size=batch_size, batch=batch)
    return out, stats


def test_a_batch_gives_the_synchronous_answers_at_half_the_price():
    with FakeOpenAI(rule) as server:
        sync_cache = MemoryCache()
        teacher = teacher_for(server)
        sync, sync_stats = label_with_cache(teacher, ROWS, sync_cache.lookup, sync_cache.store, batch_size=8)
        batch_cache, registry = MemoryCache(), MemoryBatchRegistry()
        out, stats = ask(server, batch_cache, registry)
        assert len(server.batches) == 1 and len(server.batch_lines) == 5  # 40 rows, 8 per request, one file
    pd.testing.assert_frame_equal(out.drop(columns="from_cache"), sync.drop(columns="from_cache"))
    assert stats.requests == sync_stats.requests == 5
    assert stats.prompt_tokens == sync_stats.prompt_tokens  # the same requests, line for line
    assert stats.cost_usd == pytest.approx(sync_stats.cost_usd / 2)
    assert sum(line["cost_usd"] for line in batch_cache.ledger) == pytest.approx(stats.cost_usd)
    assert {line["batch_id"] for line in batch_cache.ledger} == {"batch_1"}
    assert stats.batch.endings == {"completed": 1} and stats.batch.submitted_requests == 5
    assert [f["status"] for f in registry.files.values()] == ["completed"]


def test_files_over_the_limits_are_split():
    with FakeOpenAI(rule) as server:
        teacher = teacher_for(server)
        pending = [(str(i), t, f"h{i}") for i, t in zip(ROWS["id"], ROWS["text"])]
        by_count = jsonl_files(teacher, pending, 4, BatchOptions(max_requests_per_file=3))
        assert [len(requests) for _, requests in by_count] == [3, 3, 3, 1]
        line = len(by_count[0][0].splitlines()[0])
        by_size = jsonl_files(teacher, pending, 4, BatchOptions(max_bytes_per_file=2 * line + 10))
        assert all(len(data) <= 2 * line + 10 for data, _ in by_size) and len(by_size) >= 5
        out, _ = ask(
            server, MemoryCache(), MemoryBatchRegistry(), BatchOptions(**{**FAST.__dict__, "max_requests_per_file": 2})
        )
        assert len(server.batches) == 3 and out["valid"].sum() == 40 - 0


ENDINGS = {
    "failed_lines": ({"completed": 2}, 1, 0),  # (batch endings, lines without an answer, bodies with no answer)
    "invalid_body": ({"completed": 2}, 0, 2),
    "expired": ({"expired": 1, "completed": 1}, 3, 0),
    "failed": ({"failed": 1, "completed": 1}, 5, 0),
}


@pytest.mark.parametrize("fault", list(ENDINGS))
def test_rows_without_an_answer_are_asked_again_in_a_new_batch(fault):
    with FakeOpenAI(rule) as server:
        server.batch_faults = [fault]
        cache, registry = MemoryCache(), MemoryBatchRegistry()
        out, stats = ask(server, cache, registry)
        assert len(server.batches) == 2
        first, second = server.batch_lines[:5], server.batch_lines[5:]
    endings, failed_lines, invalid = ENDINGS[fault]
    # the second batch asks exactly the requests the first left without an answer
    assert len(second) == failed_lines + invalid
    assert {line["custom_id"] for line in second} <= {line["custom_id"] for line in first}
    assert out["valid"].all()
    assert (stats.batch.endings, stats.batch.failed_lines, stats.batch.invalid_lines) == (
        endings,
        failed_lines,
        invalid,
    )
    assert sorted(f["status"] for f in registry.files.values()) == sorted(
        s for s, n in endings.items() for _ in range(n)
    )
    assert sum(line["rows_answered"] for line in cache.ledger) == 40


def test_rows_still_without_an_answer_can_be_reasked_synchronously():
    with FakeOpenAI(rule) as server:
        server.batch_faults = ["expired"]
        options = BatchOptions(**{**FAST.__dict__, "reask": "sync"})
        out, stats = ask(server, MemoryCache(), MemoryBatchRegistry(), options)
        assert len(server.batches) == 1 and len(server.chat_requests()) == 3  # 5 lines, 2 answered before expiry
    assert out["valid"].all()
    assert stats.batch.endings == {"expired": 1}


def test_a_step_that_stops_waiting_is_resumed_by_the_next_without_resubmitting():
    with FakeOpenAI(rule) as server:
        server.hold_batches = True
        cache, registry = MemoryCache(), MemoryBatchRegistry()
        with pytest.raises(BatchPending, match="batch_1 still running.*next run resumes"):
            ask(server, cache, registry, BatchOptions(poll_seconds=0.01, wait_seconds=0.1, min_rows=1))
        assert [f["batch_id"] for f in registry.open_files()] == ["batch_1"]
        server.hold_batches = False
        logs = []
        out, stats = ask(server, cache, registry, log=logs.append)
        assert len(server.batches) == 1  # resumed, not submitted again
    assert out["valid"].sum() == 40 and stats.batch.resumed == 1
    assert any("resuming 1 batch file" in line for line in logs)


def test_an_upload_whose_batch_was_never_recorded_is_submitted_once_from_its_file():
    with FakeOpenAI(rule) as server:
        teacher = teacher_for(server)
        client = BatchClient(teacher.client, server.base_url)
        pending = [(str(i), t, text_hash(t)) for i, t in zip(ROWS["id"], ROWS["text"])]
        ((data, requests),) = jsonl_files(teacher, pending, 8, FAST)
        registry = MemoryBatchRegistry()
        file_id = client.upload(data, "x.jsonl")
        registry.record_file(file_id, requests)
        client.submit(file_id, "24h", {})  # created at the provider, then the run died before recording it
        out, _ = ask(server, MemoryCache(), registry)
        assert len(server.batches) == 1
    assert out["valid"].sum() == 40


def test_a_cancelled_batch_stops_the_step_keeping_what_it_answered():
    with FakeOpenAI(rule) as server:
        server.hold_batches = True
        cache, registry = MemoryCache(), MemoryBatchRegistry()
        teacher = teacher_for(server)
        client = BatchClient(teacher.client, server.base_url)

        def cancel_on_first_poll(line):
            if "in_progress" in line:
                client.cancel("batch_1")

        with pytest.raises(BatchCancelled, match="batch_1 cancelled"):
            ask(server, cache, registry, log=cancel_on_first_poll)
        assert len(cache.answers) == 16  # two of the five requests were answered before the cancel
        assert [f["status"] for f in registry.files.values()] == ["cancelled"]


def test_an_endpoint_without_batches_is_one_line_or_a_chosen_fallback():
    with FakeOpenAI(rule, supports_batches=False) as server:
        with pytest.raises(TeacherFatalError, match="has no Batch API.*SCALELLM_TEACHER_MODE=sync"):
            ask(server, MemoryCache(), MemoryBatchRegistry())
        options = BatchOptions(**{**FAST.__dict__, "fallback": "sync"})
        out, stats = ask(server, MemoryCache(), MemoryBatchRegistry(), options)
        assert len(server.chat_requests()) == 5
    assert out["valid"].sum() == 40 and stats.batch.fell_back


def test_few_rows_go_synchronously():
    with FakeOpenAI(rule) as server:
        options = BatchOptions(**{**FAST.__dict__, "min_rows": 100})
        out, stats = ask(server, MemoryCache(), MemoryBatchRegistry(), options)
        assert not server.batches and len(server.chat_requests()) == 5
    assert out["valid"].sum() == 40


def test_the_cli_lists_the_recorded_batches_and_cancels_one(tmp_path, monkeypatch, capsys):
    from scalellm_dagster.cli.main import main
    from scalellm_dagster.resources import Warehouse

    db = tmp_path / "wh.duckdb"
    with FakeOpenAI(rule) as server:
        server.hold_batches = True
        monkeypatch.setenv("SCALELLM_DUCKDB_PATH", str(db))
        monkeypatch.setenv("SCALELLM_TEACHER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        cache = Warehouse(database=str(db)).answer_cache(
            {"provider": "openai", "model": "m", "prompt_version": "v1", "task": "sentiment", "run_id": "r1"}
        )
        with pytest.raises(BatchPending):
            ask(server, cache, cache.batches, BatchOptions(poll_seconds=0.01, wait_seconds=0.05, min_rows=1))
        assert main(["batch", "list"]) == 0
        listed = capsys.readouterr().out
        assert "batch_1" in listed and "sentiment" in listed and "open (a run resumes it)" in listed
        assert main(["batch", "cancel", "batch_1"]) == 0
        assert "batch_1 is cancelling" in capsys.readouterr().out
        assert server.batches["batch_1"]["status"] == "cancelling"
        assert main(["batch", "cancel", "batch_9"]) == 2
        assert "not a batch this warehouse records" in capsys.readouterr().err
        with pytest.raises(BatchCancelled):  # the run that resumes it sees the cancel and stops
            ask(server, cache, cache.batches)
    assert main(["batch", "list"]) == 0 and "no open batches" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SCALELLM_TEACHER_MODE": "async"}, r"SCALELLM_TEACHER_MODE='async': expected one of \['sync', 'batch'\]"),
        ({"SCALELLM_TEACHER_MODE": "batch"}, "the Batch API is an OpenAI-compatible endpoint's, and the teacher is"),
        (
            {"SCALELLM_TEACHER": "openai", "SCALELLM_BATCH_PRICE_FACTOR": "2"},
            "SCALELLM_BATCH_PRICE_FACTOR=2: expected the batch price as a share",
        ),
        ({"SCALELLM_TEACHER": "openai", "SCALELLM_BATCH_REASK": "later"}, "SCALELLM_BATCH_REASK='later'"),
    ],
)
def test_batch_settings_that_cannot_work_are_refused_by_name(environ, message):
    from scalellm_dagster.settings import SettingError, Settings

    with pytest.raises(SettingError, match=message):
        Settings.from_env(environ)


def test_a_task_may_choose_its_mode_without_changing_its_definition():
    from dataclasses import replace

    from scalellm_dagster.names import task_fingerprint
    from scalellm_dagster.resources.teacher import TeacherResource
    from tests.test_openai_teacher import TASK

    batch_task = replace(TASK, teacher_mode="batch")
    assert task_fingerprint(batch_task) == task_fingerprint(TASK)  # same answers: nothing is re-taught
    openai = TeacherResource(kind="openai")
    assert openai.uses_batches(batch_task) and not openai.uses_batches(TASK)
    assert TeacherResource(kind="openai", mode="batch").uses_batches(TASK)
    assert not TeacherResource(kind="openai", mode="batch").uses_batches(replace(TASK, teacher_mode="sync"))
    assert not TeacherResource(kind="simulated_hard").uses_batches(batch_task)  # a simulation has no Batch API


def test_a_batch_read_again_after_a_crash_is_booked_once(tmp_path):
    from scalellm_dagster.resources import Warehouse

    warehouse = Warehouse(database=str(tmp_path / "wh.duckdb"))
    key = {"provider": "openai", "model": "m", "prompt_version": "v1", "task": "sentiment", "run_id": "r1"}
    cache = warehouse.answer_cache(key)
    registry = cache.batches

    class Crash(Exception):
        pass

    def crash_before_closing(*_args):
        raise Crash  # the answers are stored; the process dies before the batch is marked closed

    with FakeOpenAI(rule) as server:
        close, registry.close = registry.close, crash_before_closing
        with pytest.raises(Crash):
            ask(server, cache, registry)
        registry.close = close
        out, stats = ask(server, cache, registry)  # resumes the same batch and reads its output again
        assert len(server.batches) == 1
    assert out["valid"].all() and stats.batch.resumed == 1
    lines = warehouse.read_df("SELECT request_id, batch_id FROM scalellm_cache.teacher_ledger")
    assert len(lines) == 5 and set(lines["batch_id"]) == {"batch_1"}  # not 10: each line booked once


def test_a_session_asking_twice_counts_each_batch_once():
    from scalellm_dagster.flow import TeacherSession

    with FakeOpenAI(rule) as server:
        teacher = teacher_for(server)
        batch = BatchRound(teacher, BatchClient(teacher.client, server.base_url), MemoryBatchRegistry(), FAST)
        session = TeacherSession(teacher, MemoryCache(), ROWS.set_index("id")["text"], 8, 4, batch=batch)
        session.ask(ROWS["id"][:24])  # three requests, then three more: as uncertainty rounds or a cascade ask again
        session.ask(ROWS["id"][24:])
        assert len(server.batches) == 2
    report = session.stats.batch
    assert (report.submitted_requests, report.endings, report.batch_ids) == (
        5,
        {"completed": 2},
        ["batch_1", "batch_2"],
    )
    assert session.stats.requests == 5
