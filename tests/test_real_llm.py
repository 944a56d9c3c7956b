"""The whole graph with a real LLM, offline: llama.cpp's own OpenAI-compatible server (a server nobody here
wrote) behind the `openai` teacher, and the same model in-process behind `local`. SmolLM2-135M is weak; what is
tested is that a real model's replies flow through: every row predicted, every sampled row answered with a valid
label or recorded with its raw answer, real token counts, the structured-output form the server accepted, and a
rerun that asks nothing."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time

import pytest
from dagster import DagsterInstance

from scalellm_dagster.assets.deployed_model import RETRAIN_TAG
from tests.pipeline_helpers import query, run_pipeline
from tests.real_llm import llama_server, requires_llm

pytestmark = requires_llm

CARD_TASK = """
tasks:
  - name: is_card
    instruction: Is the customer's message about a payment card?
    gold_column: is_card
    budget: 40
    candidates: [logistic_regression, ridge]
    labels: {card: about a card, other: about something else}
"""


@pytest.fixture
def card_env(pipeline_env, tasks_file, monkeypatch):
    tasks_file.write_text(textwrap.dedent(CARD_TASK))
    monkeypatch.setenv("SCALELLM_TEACHER_CONCURRENCY", "1")  # one model thread: requests queue anyway
    return pipeline_env


def _run_twice_and_check(db: str, provider: str) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = run_pipeline(instance)
        assert result.success
        assert query(db, "SELECT count(*), count(DISTINCT id) FROM is_card.predictions")[0] == (400, 400)
        sampled, valid, lost = query(
            db,
            """SELECT count(*), count(*) FILTER (WHERE valid),
                                                   count(*) FILTER (WHERE NOT valid AND raw_answer IS NULL)
                                            FROM is_card.labeled_sample""",
        )[0]
        assert sampled == 40 and lost == 0 and valid >= 30  # a grammar-constrained reply names a label
        requests, tokens, estimated, forms = query(
            db,
            """SELECT count(*), sum(prompt_tokens),
                bool_or(tokens_estimated), string_agg(DISTINCT response_format, ',')
            FROM scalellm_cache.teacher_ledger""",
        )[0]
        assert tokens > 0 and not estimated and forms == "json_object+schema"
        assert query(db, "SELECT DISTINCT provider FROM scalellm_cache.teacher_answers")[0][0] == provider
        # a replacement draws the same sample again, every answer from the cache (a plain rerun asks nothing at all)
        again = run_pipeline(instance, tags={RETRAIN_TAG: "all"})
        assert again.success
        assert query(db, "SELECT count(*) FROM scalellm_cache.teacher_ledger")[0][0] == requests  # 0 requests
    meta = [
        e for e in again.get_asset_materialization_events() if e.asset_key.to_user_string() == "is_card/labeled_sample"
    ][0].materialization.metadata
    assert meta["cache_misses"].value == 0 and meta["cache_hits"].value == 40


def test_llama_cpp_server_as_the_openai_teacher(card_env, monkeypatch):
    with llama_server() as base_url:
        monkeypatch.setenv("SCALELLM_TEACHER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", base_url)
        monkeypatch.setenv("SCALELLM_TEACHER_MODEL", "smollm2-135m")
        _run_twice_and_check(card_env["SCALELLM_DUCKDB_PATH"], "openai")
    db = card_env["SCALELLM_DUCKDB_PATH"]
    # the server answers json_schema with HTTP 500: one probe, then json_object with a schema for every request
    assert query(db, "SELECT count(*) FROM scalellm_cache.teacher_ledger WHERE response_format IS NULL")[0][0] == 0


def test_local_teacher_in_its_worker_process(card_env, monkeypatch):
    import sys

    monkeypatch.setenv("SCALELLM_TEACHER", "local")
    _run_twice_and_check(card_env["SCALELLM_DUCKDB_PATH"], "local")
    assert "llama_cpp" not in sys.modules  # native model code ran in the worker only: a crash there spares pytest


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_the_real_model_process_killed_mid_request_fails_that_request_only(sig):
    from scalellm_dagster.teachers.local import model_path
    from scalellm_dagster.teachers.local_worker import LocalModelDied, ModelWorker

    worker = ModelWorker(str(model_path(None)))
    worker.start()
    pid, errors = worker.process.pid, []
    long_answer = [{"role": "user", "content": "Count from one to two hundred."}]
    # a grammar that cannot close before 150 numbers: 400 tokens, seconds of decoding (free text can stop in 0.3 s)
    numbers = {"type": "array", "items": {"type": "integer"}, "minItems": 150}
    at_length = {"type": "json_object", "schema": {"type": "object", "properties": {"n": numbers}, "required": ["n"]}}

    def ask():
        try:
            worker.request(messages=long_answer, temperature=0, max_tokens=400, response_format=at_length)
        except LocalModelDied as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=ask)
    thread.start()
    time.sleep(0.5)  # decoding by then: 400 tokens take seconds
    os.kill(pid, sig)
    thread.join(30)
    try:
        assert errors and f"died (signal {int(sig)}: {sig.name}) while answering a request" in errors[0]
        out = worker.request(messages=[{"role": "user", "content": "Say OK."}], temperature=0, max_tokens=4)
        assert out["choices"][0]["message"]["content"] and worker.process.pid != pid  # a fresh process answers
    finally:
        worker.close()


def test_a_missing_gguf_is_one_clear_line(monkeypatch, tmp_path):
    from scalellm_dagster.resources.from_settings import build_resources
    from scalellm_dagster.settings import SettingError, Settings

    monkeypatch.setenv("SCALELLM_TEACHER", "local")
    monkeypatch.setenv("SCALELLM_LOCAL_MODEL", str(tmp_path / "nope.gguf"))
    with pytest.raises(SettingError, match=r"SCALELLM_LOCAL_MODEL='.*nope.gguf': no such file; expected a GGUF"):
        build_resources(Settings.from_env())


def test_bench_with_the_local_teacher_reports_agreement_with_it(tmp_path):
    import json

    from scalellm_dagster.cli import main
    from scalellm_dagster.settings import DEMO_CORPUS

    out = tmp_path / "report.json"
    assert (
        main(
            [
                "bench",
                "--data",
                str(DEMO_CORPUS),
                "--label-column",
                "topic",
                "--split-column",
                "split",
                "--eval-split",
                "test",
                "--max-rows",
                "600",
                "--budgets",
                "30,60",
                "--teacher",
                "local",
                "--teacher-batch-size",
                "10",
                "--teacher-concurrency",
                "1",
                "--baseline-sample",
                "12",
                "--candidates",
                "ridge",
                "--dim",
                "32",
                "--probe-rows",
                "2000",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    teacher = report["teacher"]
    assert teacher["name"].startswith("local:") and teacher["accuracy_measured_on_rows"] == 12
    assert abs(sum(teacher["answer_share_by_label"].values()) - 1) < 0.01
    assert "extrapolated from 12 row-by-row calls" in report["baseline"]["seconds_measured_or_extrapolated"]
    for run in report["runs"]:
        assert run["agreement_measured_on_rows"] == 12 and 0 <= run["agreement_with_teacher"] <= 1
        assert run["seconds_teacher_basis"] == "projected from the measured seconds per row"


TWO_TASKS = (
    CARD_TASK
    + """
  - name: is_transfer
    instruction: Is the customer's message about a bank transfer?
    gold_column: is_transfer
    budget: 40
    candidates: [logistic_regression, ridge]
    labels: {transfer: about a transfer, other: about something else}
"""
)


def test_shared_requests_through_llama_cpp_server_answer_both_tasks(card_env, tasks_file, monkeypatch, tmp_path):
    """Both tasks' questions in one request to a real model behind llama.cpp's server (json_schema refused, the
    joint schema sent as json_object + schema): both samples answered from the joint requests, real tokens split
    between the tasks' ledgers, and a rerun asks nothing."""
    import pandas as pd

    corpus = pd.read_parquet(card_env["SCALELLM_CORPUS"])
    corpus["is_transfer"] = corpus["topic"].eq("transfers").map({True: "transfer", False: "other"})
    corpus.to_parquet(card_env["SCALELLM_CORPUS"], index=False)
    tasks_file.write_text(textwrap.dedent(TWO_TASKS))
    monkeypatch.setenv("SCALELLM_SHARED_REQUESTS", "true")
    db = card_env["SCALELLM_DUCKDB_PATH"]
    with llama_server() as base_url:
        monkeypatch.setenv("SCALELLM_TEACHER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", base_url)
        monkeypatch.setenv("SCALELLM_TEACHER_MODEL", "smollm2-135m")
        with DagsterInstance.ephemeral() as instance:
            assert run_pipeline(instance).success
            joint = query(
                db,
                """SELECT task, count(*), sum(rows_answered), sum(prompt_tokens), bool_or(tokens_estimated),
                          string_agg(DISTINCT response_format, ',')
                   FROM scalellm_cache.teacher_ledger WHERE shared_with IS NOT NULL GROUP BY task ORDER BY task""",
            )
            # same budget and seed: the same 40 rows, 4 joint requests of 10, booked half to each task
            assert [(t, n) for t, n, *_ in joint] == [("is_card", 4), ("is_transfer", 4)]
            assert all(
                answered >= 36 and tokens > 0 and not estimated for _, _, answered, tokens, estimated, _ in joint
            )
            assert {form for *_, form in joint} == {"json_object+schema"}
            for task in ("is_card", "is_transfer"):
                sampled, valid = query(
                    db, f"SELECT count(*), count(*) FILTER (WHERE valid) FROM {task}.labeled_sample"
                )[0]
                assert sampled == 40 and valid >= 36  # grammar-constrained: each field names one of its labels
            requests = query(db, "SELECT count(*) FROM scalellm_cache.teacher_ledger")[0][0]
            assert run_pipeline(instance).success
            assert query(db, "SELECT count(*) FROM scalellm_cache.teacher_ledger")[0][0] == requests
