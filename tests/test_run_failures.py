"""`scalellm run` when things go wrong: the last lines name the cause and the fix (tracebacks stay in the log),
and a whole run at a 20 % mixed fault rate still predicts every row."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from dagster import DagsterInstance

from tests.conftest import demo_slice
from tests.fake_openai import FakeOpenAI
from tests.pipeline_helpers import query, run_pipeline

ALL_FAULTS = (
    "429",
    "429_bare",
    "500",
    "503",
    "hang",
    "drop",
    "html",
    "cut_json",
    "off_schema",
    "empty_choices",
    "malformed",
    "truncate",
    "no_label",
    "out_of_set",
    "case",
)


@pytest.fixture
def gold():
    df = demo_slice(400)
    return dict(zip(df["text"], df["topic"]))


@pytest.fixture
def openai_env(pipeline_env, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("SCALELLM_TEACHER", "openai")
    monkeypatch.setenv("SCALELLM_TEACHER_MAX_RETRIES", "2")
    return pipeline_env


def scalellm_run() -> tuple[int, str]:
    """`scalellm run` in its own process (the definitions are built from the environment at import)."""
    proc = subprocess.run(
        [sys.executable, "-m", "scalellm_dagster.cli", "run"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stderr


def _last_lines(err: str, n: int = 3) -> str:
    return "\n".join(err.strip().splitlines()[-n:])


def test_a_refused_key_ends_the_run_with_the_endpoint_the_status_and_the_fix(openai_env, monkeypatch, gold):
    with FakeOpenAI(lambda t: gold[t], api_key="sk-right") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        code, err = scalellm_run()
    assert code == 1
    last = _last_lines(err, 2)
    assert "FAILED" in last and "Cause:" in last
    assert (
        f"topic/labeled_sample: teacher endpoint {server.base_url} (model gpt-4o-mini): HTTP 401 Incorrect API "
        "key provided — set OPENAI_API_KEY to a key this endpoint accepts (0 answers from this round are cached; "
        "a rerun asks only the 120 other rows)"
    ) in last
    assert "Traceback" not in last and "retries" not in last


def test_an_outage_ends_the_run_saying_what_was_kept(openai_env, monkeypatch, gold):
    with FakeOpenAI(lambda t: gold[t]) as server:
        server.faults = [None] * 3 + ["503"] * 200
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("SCALELLM_TEACHER_MAX_RETRIES", "1")
        monkeypatch.setenv("SCALELLM_TEACHER_CONCURRENCY", "1")
        code, err = scalellm_run()
    assert code == 1
    last = _last_lines(err, 1)
    assert last.startswith("  topic/labeled_sample: ")
    assert "teacher requests failed, more than the 20% a run tolerates" in last
    assert "30 answers from this round are cached; a rerun asks only the 90 other rows" in last


def test_a_tasks_file_mistake_is_one_line_not_a_traceback(pipeline_env, tasks_file):
    tasks_file.write_text("tasks:\n  - name: topic\n    instruction: x\n    labels: [a]\n    budget: 50\n")
    code, err = scalellm_run()
    assert code == 2
    assert "Traceback" not in err and err.startswith("scalellm: ") and "labels" in err


def test_a_corpus_that_is_not_parquet_names_the_file(pipeline_env, small_corpus, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    small_corpus.write_text("id,text\n1,hello\n")
    code, err = scalellm_run()
    assert code == 1
    last = _last_lines(err, 1)
    assert f"corpus: corpus source {small_corpus}: not a readable Parquet file" in last
    assert "check that SCALELLM_CORPUS points at the right file" in last


def test_the_whole_graph_survives_a_20_percent_mixed_fault_rate(openai_env, monkeypatch, gold):
    with FakeOpenAI(lambda t: gold[t], fault_rate=0.2, fault_mix=ALL_FAULTS, seed=3) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("SCALELLM_TEACHER_BATCH_SIZE", "5")
        monkeypatch.setenv("SCALELLM_TEACHER_CONCURRENCY", "4")
        monkeypatch.setenv("SCALELLM_TEACHER_MAX_RETRIES", "4")
        monkeypatch.setenv("SCALELLM_TEACHER_TIMEOUT_SECONDS", "2")
        with DagsterInstance.ephemeral() as instance:
            result = run_pipeline(instance)
            assert result.success
            injected = list(server.injected)
            db = openai_env["SCALELLM_DUCKDB_PATH"]
            assert query(db, "SELECT count(*), count(DISTINCT id) FROM topic.predictions")[0] == (400, 400)
            unanswered = query(db, "SELECT count(*) FROM topic.labeled_sample WHERE raw_answer IS NULL")[0][0]
            answered = query(db, "SELECT count(*) FROM scalellm_cache.teacher_answers")[0][0]
            booked = query(db, "SELECT sum(rows_answered) FROM scalellm_cache.teacher_ledger")[0][0]
            assert booked == answered  # every answer booked once, no fabricated one
            # the sample's answered rows (the first drift audit is a baseline and asks nothing)
            assert answered == 120 - unanswered
            assert query(db, "SELECT count(*) FROM scalellm_cache.teacher_answers WHERE raw_answer = 'None'")[0][0] == 0
            before = len(server.chat_requests())
            server.fault_rate = 0.0
            assert run_pipeline(instance).success  # a rerun asks only what was never answered
            asked_again = sum(
                len([ln for ln in r["messages"][-1]["content"].splitlines() if ln.startswith("{")])
                for r in server.chat_requests()[before:]
            )
            assert asked_again == unanswered
    assert len(injected) >= 5 and len(set(injected)) >= 4  # the faults really happened, of several kinds


def test_a_run_killed_mid_labelling_never_pays_twice_and_resumes_to_a_clean_runs_predictions(
    openai_env, monkeypatch, gold, tmp_path
):
    """SIGKILL to the whole `scalellm run` while it labels (400 ms a request, 5 rows a request, 2 at once): every
    answer delivered before the kill is safe (journaled before the next request is sent, stored by the rerun), so
    the rerun asks again only what was in flight; and the resumed run predicts exactly what a run never killed
    does. With the warehouse writes grouped every second and no journal, answers of the last second are asked
    again and this test fails."""
    import signal
    import time

    monkeypatch.setenv("SCALELLM_TEACHER_BATCH_SIZE", "5")
    monkeypatch.setenv("SCALELLM_TEACHER_CONCURRENCY", "2")
    with FakeOpenAI(lambda t: gold[t], latency_s=0.4) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        proc = subprocess.Popen(
            [sys.executable, "-m", "scalellm_dagster.cli", "run"],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while len(server.delivered) < 12 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        killed_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        asked_before = len(server.chat_requests())
        delivered = [texts for at, texts in server.delivered if at < killed_at - 0.1]
        assert len(delivered) >= 10 and asked_before < 24  # killed mid-labelling (120 rows = 24 requests)
        code, err = scalellm_run()
        assert code == 0, err
        with DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
            # the rerun found the killed run's slot of the warehouse's pool held: it marked that run failed and
            # freed the slot, or it would have waited for it forever
            assert sorted(r.status.value for r in instance.get_runs()) == ["FAILURE", "SUCCESS"]
        reasked = {t for r in server.chat_requests()[asked_before:] for t in _texts_of(r)}
        paid = {t for texts in delivered for t in texts}
        assert not reasked & paid  # nothing delivered before the kill is asked again
        sample = {t for (t,) in query(openai_env["SCALELLM_DUCKDB_PATH"], "SELECT text FROM topic.labeled_sample")}
        assert len(sample) == 120 and paid <= sample
        assert len(reasked & sample) <= 120 - len(paid)
        resumed = query(
            openai_env["SCALELLM_DUCKDB_PATH"], "SELECT id, label, source FROM topic.predictions ORDER BY id"
        )
        monkeypatch.setenv("SCALELLM_DUCKDB_PATH", str(tmp_path / "clean.duckdb"))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "clean_home"))
        code, err = scalellm_run()
        assert code == 0, err
    clean = query(str(tmp_path / "clean.duckdb"), "SELECT id, label, source FROM topic.predictions ORDER BY id")
    assert resumed == clean and len(clean) == 400


def _texts_of(body: dict) -> list[str]:
    from tests.fake_openai import _texts

    return _texts(body)
