"""The local model runs in a worker process: a crash in its native code (SIGSEGV, SIGKILL) fails one request
with its cause, the answers already received stay cached, a rerun asks only the rest, and the test process itself
never loads native model code."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest

from scalellm_dagster.flow.session import MemoryCache
from scalellm_dagster.tasks_config import parse_task
from scalellm_dagster.teachers import local_worker
from scalellm_dagster.teachers.base import TeacherError, TeacherFatalError
from scalellm_dagster.teachers.local import LlamaChatClient
from scalellm_dagster.teachers.local_worker import LocalModelDied, LocalModelError, ModelWorker
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.teachers.runner import label_with_cache
from tests import fake_llama

TASK = parse_task({"name": "t", "instruction": "Which?", "labels": ["cards", "transfers"], "budget": 40}, "test")


@pytest.fixture
def fake_model(monkeypatch, tmp_path):
    monkeypatch.setattr(local_worker, "LOADER", fake_llama.LOADER)
    monkeypatch.setenv("FAKE_LLAMA_CRASH_ONCE", str(tmp_path))
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF")
    workers = []

    def make(**kw) -> ModelWorker:
        workers.append(ModelWorker(str(path), **kw))
        return workers[-1]

    yield make
    for worker in workers:
        worker.close()


def _teacher(worker: ModelWorker) -> OpenAIChatTeacher:
    teacher = OpenAIChatTeacher(
        TASK,
        LlamaChatClient(worker, "fake.gguf"),
        "fake.gguf",
        forms=("json_object+schema",),
        endpoint="local:fake.gguf",
    )
    teacher.provider = "local"
    return teacher


def _rows(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "text": texts})


TEXTS = [f"my cards {i}" if i % 2 else f"transfers {i}" for i in range(40)]


@pytest.mark.parametrize(
    "marker, cause", [("SEGV-ME", "died (signal 11: SIGSEGV)"), ("KILL-ME", "died (signal 9: SIGKILL)")]
)
def test_a_crash_fails_one_request_keeps_the_rest_and_a_rerun_asks_only_its_rows(fake_model, marker, cause):
    texts = TEXTS.copy()
    texts[23] = f"cards {marker}"  # in the third batch of 10
    teacher, cache, logged = _teacher(fake_model()), MemoryCache(), []
    out, stats = label_with_cache(
        teacher,
        _rows(texts),
        cache.lookup,
        cache.store,
        batch_size=10,
        concurrency=1,
        log=logged.append,
        max_failed_share=0.25,
    )
    assert stats.failed_requests == 1 and stats.unanswered == 10
    assert out["valid"].sum() == 30 and not out.loc[20:29, "valid"].any()
    assert any(
        "the local model process (pid" in line and cause in line and "while answering a request" in line
        for line in logged
    )
    assert len(cache.answers) == 30  # what was answered before and after the crash is kept
    again, stats = label_with_cache(teacher, _rows(texts), cache.lookup, cache.store, batch_size=10, concurrency=1)
    assert again["valid"].all() and stats.cache_hits == 30 and stats.asked == 10 and stats.requests == 1


def test_a_model_that_crashes_every_time_stops_the_run_with_the_cause(fake_model, monkeypatch):
    monkeypatch.delenv("FAKE_LLAMA_CRASH_ONCE")
    teacher, cache = _teacher(fake_model()), MemoryCache()
    texts = [f"cards SEGV-ME {i}" for i in range(100)]  # 10 requests: the first failure alone is tolerated
    with pytest.raises(
        TeacherError,
        match=r"died \(signal 11: SIGSEGV\) while answering a request, the second time "
        r"in a row: the model cannot run here",
    ):
        label_with_cache(teacher, _rows(texts), cache.lookup, cache.store, batch_size=10, concurrency=1)


def test_a_worker_killed_from_outside_mid_request_fails_that_request(fake_model):
    worker = fake_model()
    worker.start()
    pid = worker.process.pid
    errors = []

    def ask():
        try:
            worker.request(
                messages=[{"role": "user", "content": 'x\n{"id": "a", "text": "SLOW"}'}], temperature=0, max_tokens=5
            )
        except LocalModelDied as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=ask)
    thread.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    thread.join(10)
    assert errors and f"(pid {pid}, fake.gguf) died (signal 9: SIGKILL) while answering a request" in errors[0]
    out = worker.request(
        messages=[{"role": "user", "content": 'x\n{"id": "b", "text": "cards"}'}], temperature=0, max_tokens=5
    )  # a fresh process takes the next request
    assert worker.process.pid != pid and "cards" in out["choices"][0]["message"]["content"]


def test_a_hung_model_is_ended_after_the_timeout(fake_model):
    worker = fake_model(timeout_seconds=1.0)
    with pytest.raises(LocalModelDied, match=r"gave no answer within 1s and was ended while answering a request"):
        worker.request(
            messages=[{"role": "user", "content": 'x\n{"id": "a", "text": "SLOW"}'}], temperature=0, max_tokens=5
        )


def test_a_model_file_that_cannot_load_is_one_clear_error(fake_model, tmp_path):
    (tmp_path / "fake.gguf").write_bytes(b"BAD!")
    with pytest.raises(LocalModelError, match=r"fake.gguf: llama.cpp cannot load it as a GGUF model"):
        fake_model().start()


def test_two_deaths_in_a_row_are_fatal_but_one_is_not(fake_model, monkeypatch):
    worker = fake_model()
    monkeypatch.delenv("FAKE_LLAMA_CRASH_ONCE")
    crash = [{"role": "user", "content": 'x\n{"id": "a", "text": "KILL-ME"}'}]
    fine = [{"role": "user", "content": 'x\n{"id": "b", "text": "cards"}'}]
    with pytest.raises(LocalModelDied):
        worker.request(messages=crash, temperature=0, max_tokens=5)
    worker.request(messages=fine, temperature=0, max_tokens=5)  # an answer resets the count
    with pytest.raises(LocalModelDied):
        worker.request(messages=crash, temperature=0, max_tokens=5)
    with pytest.raises(TeacherFatalError):
        worker.request(messages=crash, temperature=0, max_tokens=5)


def test_the_install_smoke_test_fails_in_one_line_when_the_model_crashes(monkeypatch, capsys):
    from tests.real_llm import HAVE_LLM

    if not HAVE_LLM:
        pytest.skip("the smoke test needs the llm extra's model path (make llm)")
    from scalellm_dagster.teachers import llama_smoke, local

    monkeypatch.setattr(local, "_WORKERS", {})  # a fresh worker, not one a test before started
    monkeypatch.setattr(local_worker, "LOADER", "tests.fake_llama:load_crashing")
    assert llama_smoke.main(["--wheelhouse", "/cache/wheels/llama-portable"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "llm smoke test FAILED: the local model process" in err and "died (signal 11: SIGSEGV) while loading" in err
    assert err.endswith("remove /cache/wheels/llama-portable and run `make llm` again to rebuild it portably")
