"""The answer journal: what a killed run received reaches the warehouse on the next run, once; a live session's
journal is left alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from scalellm_dagster.resources import Warehouse

KEY = {"provider": "openai", "model": "m", "prompt_version": "v", "task": "t", "run_id": "run1"}


def _journal_in_a_killed_process(db: str, answers: int, clear_after: int | None = None) -> None:
    """A process that journals `answers` requests (storing the first `clear_after` in the warehouse), then dies
    with SIGKILL, as `kill -9` would leave it."""
    code = textwrap.dedent(f"""
        import os, signal
        from scalellm_dagster.resources import Warehouse
        wh = Warehouse(database={db!r})
        cache = wh.answer_cache({KEY!r})
        stored = []
        for i in range({answers}):
            answers = [{{"text_hash": f"h{{i}}", "label": "a", "raw_answer": "a"}}]
            ledger = [{{"request_id": f"r{{i}}", "rows_asked": 1, "rows_answered": 1, "prompt_tokens": 1,
                        "completion_tokens": 1, "cost_usd": 0.0, "seconds": 0.1, "tokens_estimated": False,
                        "response_format": None}}]
            cache.journal.append(answers, ledger)
            stored.append((answers, ledger))
            if {clear_after!r} is not None and i + 1 == {clear_after!r}:
                cache.store([a for s in stored for a in s[0]], [l for s in stored for l in s[1]])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr


def _counts(wh: Warehouse) -> tuple[int, int]:
    answers = wh.read_df("SELECT count(*) AS n FROM scalellm_cache.teacher_answers")["n"][0]
    ledger = wh.read_df("SELECT count(*) AS n FROM scalellm_cache.teacher_ledger")["n"][0]
    return int(answers), int(ledger)


def test_a_killed_runs_answers_are_stored_by_the_next_session(tmp_path):
    db = str(tmp_path / "wh.duckdb")
    _journal_in_a_killed_process(db, answers=5)
    wh = Warehouse(database=db)
    assert list((tmp_path / "wh.journal").glob("*.jsonl"))  # left behind by the kill
    wh.answer_cache({**KEY, "run_id": "run2"})  # the next session opens the cache
    assert _counts(wh) == (5, 5)
    assert not list((tmp_path / "wh.journal").glob("*.jsonl"))


def test_a_journal_whose_lines_were_stored_books_nothing_twice(tmp_path):
    db = str(tmp_path / "wh.duckdb")
    _journal_in_a_killed_process(db, answers=5, clear_after=3)  # stored 3, killed before clearing the journal
    wh = Warehouse(database=db)
    assert _counts(wh) == (3, 3)
    wh.answer_cache({**KEY, "run_id": "run2"})
    assert _counts(wh) == (5, 5)  # the 3 stored are not booked again, the 2 journaled only are added


def test_a_live_sessions_journal_is_not_replayed(tmp_path):
    wh = Warehouse(database=str(tmp_path / "wh.duckdb"))
    live = wh.answer_cache(KEY)
    live.journal.append(
        [{"text_hash": "h", "label": "a", "raw_answer": "a"}],
        [{"request_id": "r", "rows_asked": 1, "rows_answered": 1}],
    )
    assert wh.replay_journals() == 0 and live.journal.path.exists()
    live.journal.clear()  # its answers reached the warehouse
    live.journal.close()
    assert not live.journal.path.exists()


def test_a_session_whose_last_store_failed_keeps_its_journal_for_the_next_run(tmp_path):
    """Closing (or garbage-collecting) a session removes its journal only when everything in it was stored: answers
    whose warehouse write failed are replayed by the next session, never paid for again."""
    db = str(tmp_path / "wh.duckdb")
    wh = Warehouse(database=db)
    cache = wh.answer_cache(KEY)
    answers = [{"text_hash": "h0", "label": "a", "raw_answer": "a"}]
    ledger = [
        {
            "request_id": "r0",
            "rows_asked": 1,
            "rows_answered": 1,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "cost_usd": 0.0,
            "seconds": 0.1,
            "tokens_estimated": False,
            "response_format": None,
        }
    ]
    cache.journal.append(answers, ledger)  # received; the store that should follow failed
    cache.journal.close()
    assert cache.journal.path.exists()
    Warehouse(database=db).answer_cache({**KEY, "run_id": "run2"})  # the next session replays it
    assert _counts(Warehouse(database=db)) == (1, 1) and not cache.journal.path.exists()

    stored = Warehouse(database=db).answer_cache({**KEY, "run_id": "run3"})
    stored.journal.append(answers, ledger)
    stored.store(answers, ledger)
    stored.journal.clear()
    stored.journal.close()
    assert not stored.journal.path.exists()  # everything stored: nothing left behind
