"""The warehouse's caches and ledger: the teacher's answers (never paid for twice), the ledger of every request,
and the vectors of paid embedding endpoints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from scalellm_dagster.embedding_arrow import ids_and_matrix
from scalellm_dagster.resources.answer_journal import AnswerJournal, orphaned_entries
from scalellm_dagster.resources.duckdb_sql import transaction, utc_now
from scalellm_dagster.resources.warehouse_tables import CACHE_SCHEMA
from scalellm_dagster.teachers.base import Answer

LEDGER_COLUMNS = (
    "rows_asked",
    "rows_answered",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "seconds",
    "tokens_estimated",
    "response_format",
    "shared_with",  # the other tasks a joint request also answered (its tokens split between them); else null
    "batch_id",  # the Batch API batch that answered the request, at the batch price; null: a synchronous request
)


class CachesAndLedger:
    """Mixed into `Warehouse`: needs its `get_connection`, `read_df` and `table_exists`."""

    def answer_cache(self, key: dict) -> WarehouseAnswerCache:
        """The answer cache and ledger for `key` (provider, model, prompt_version, task, run_id), after storing
        what killed runs had journaled and not stored."""
        self.ensure_cache_tables()
        self.replay_journals()
        return WarehouseAnswerCache(self, key)

    def journal_folder(self) -> Path | None:
        if self.database == ":memory:":
            return None
        db = Path(self.database)
        return db.parent / f"{db.stem}.journal"

    def replay_journals(self) -> int:
        """Store the answers of journals no live session holds, then remove them; returns the answers stored."""
        folder, stored = self.journal_folder(), 0
        for path, entries in orphaned_entries(folder) if folder else []:
            for entry in entries:
                self.store_answers(entry["key"], entry["answers"], entry["ledger"])
                stored += len(entry["answers"])
            path.unlink(missing_ok=True)
        return stored

    def ensure_cache_tables(self) -> None:
        with self.get_connection() as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {CACHE_SCHEMA}")
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {CACHE_SCHEMA}.teacher_answers (
                    provider VARCHAR, model VARCHAR, prompt_version VARCHAR, text_hash VARCHAR,
                    label VARCHAR, raw_answer VARCHAR, answered_at TIMESTAMP,
                    PRIMARY KEY (provider, model, prompt_version, text_hash))"""
            )
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {CACHE_SCHEMA}.teacher_ledger (
                    task VARCHAR, run_id VARCHAR, provider VARCHAR, model VARCHAR, prompt_version VARCHAR,
                    rows_asked INTEGER, rows_answered INTEGER, prompt_tokens BIGINT, completion_tokens BIGINT,
                    cost_usd DOUBLE, seconds DOUBLE, tokens_estimated BOOLEAN, requested_at TIMESTAMP,
                    response_format VARCHAR)"""
            )
            # warehouses from before the column: which structured-output form each request used
            conn.execute(f"ALTER TABLE {CACHE_SCHEMA}.teacher_ledger ADD COLUMN IF NOT EXISTS response_format VARCHAR")
            # a journal replayed after its lines were stored books nothing twice (resources/answer_journal.py)
            conn.execute(f"ALTER TABLE {CACHE_SCHEMA}.teacher_ledger ADD COLUMN IF NOT EXISTS request_id VARCHAR")
            conn.execute(f"ALTER TABLE {CACHE_SCHEMA}.teacher_ledger ADD COLUMN IF NOT EXISTS shared_with VARCHAR")
            conn.execute(f"ALTER TABLE {CACHE_SCHEMA}.teacher_ledger ADD COLUMN IF NOT EXISTS batch_id VARCHAR")
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {CACHE_SCHEMA}.teacher_batches (
                    file_id VARCHAR PRIMARY KEY, batch_id VARCHAR, provider VARCHAR, model VARCHAR,
                    prompt_version VARCHAR, task VARCHAR, run_id VARCHAR, requests VARCHAR, rows INTEGER,
                    status VARCHAR, note VARCHAR, submitted_at TIMESTAMP, closed_at TIMESTAMP)"""
            )

    def cached_vectors(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
        """Vectors already paid for from `model`, by text hash (OpenAI-compatible embedders only)."""
        table = vector_cache_table(model)
        if not hashes or not self.table_exists(table):
            return {}
        with self.get_connection() as conn:
            conn.register("_hashes", pa.table({"text_hash": pa.array(hashes, pa.string())}))
            found = conn.sql(
                f"SELECT c.text_hash AS id, c.vector FROM {table} c SEMI JOIN _hashes h ON c.text_hash = h.text_hash"
            ).to_arrow_table()
        ids, matrix = ids_and_matrix(found)
        return dict(zip(ids.tolist(), matrix))

    def store_vectors(self, model: str, hashes: list[str], matrix: np.ndarray) -> None:
        table = vector_cache_table(model)
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        incoming = pa.table(
            {
                "text_hash": pa.array(hashes, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1]),
            }
        )
        with self.get_connection() as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {CACHE_SCHEMA}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (text_hash VARCHAR PRIMARY KEY, vector FLOAT[{matrix.shape[1]}])"
            )
            conn.register("_vectors", incoming)
            conn.execute(f"INSERT OR REPLACE INTO {table} SELECT * FROM _vectors")

    def cached_answers(self, provider: str, model: str, prompt_version: str, hashes: list[str]) -> dict[str, Answer]:
        if not hashes:
            return {}
        with self.get_connection() as conn:
            conn.register("_hashes", pa.table({"text_hash": pa.array(hashes, pa.string())}))
            found = conn.execute(
                f"""SELECT a.text_hash, a.label, a.raw_answer FROM {CACHE_SCHEMA}.teacher_answers a
                    SEMI JOIN _hashes h ON a.text_hash = h.text_hash
                    WHERE a.provider = ? AND a.model = ? AND a.prompt_version = ?""",
                [provider, model, prompt_version],
            ).fetchall()
        return {h: Answer(label=label, raw=raw) for h, label, raw in found}

    def store_answers(self, key: dict, answers: list[dict], ledger: list[dict]) -> None:
        """Answers and the ledger lines of the requests that paid for them, in one transaction."""
        now = utc_now()
        answers_df = pd.DataFrame(answers, columns=["text_hash", "label", "raw_answer"])
        ledger_df = pd.DataFrame(ledger, columns=[*LEDGER_COLUMNS, "request_id"])
        # text columns a line may leave out: NULL, never a float NaN cast to the text 'nan'
        for column in ("response_format", "shared_with", "request_id", "batch_id"):
            ledger_df[column] = pd.Series([line.get(column) for line in ledger], dtype=object)
        with self.get_connection() as conn, transaction(conn):
            if len(answers_df):
                conn.register("_answers", answers_df)
                conn.execute(
                    f"""INSERT OR REPLACE INTO {CACHE_SCHEMA}.teacher_answers
                            SELECT ?, ?, ?, text_hash, label, raw_answer, ? FROM _answers""",
                    [key["provider"], key["model"], key["prompt_version"], now],
                )
            conn.register("_ledger", ledger_df)
            conn.execute(
                f"""INSERT INTO {CACHE_SCHEMA}.teacher_ledger
                            (task, run_id, provider, model, prompt_version, {", ".join(LEDGER_COLUMNS)}, requested_at,
                             request_id)
                        SELECT ?, ?, ?, ?, ?, {", ".join(LEDGER_COLUMNS)}, ?, request_id FROM _ledger
                        WHERE request_id IS NULL OR request_id NOT IN
                            (SELECT request_id FROM {CACHE_SCHEMA}.teacher_ledger WHERE request_id IS NOT NULL)""",
                [key["task"], key["run_id"], key["provider"], key["model"], key["prompt_version"], now],
            )

    def ledger_totals(self, task: str) -> dict:
        """Everything the teacher was paid for this task, across runs."""
        row = self.read_df(
            f"""SELECT coalesce(sum(rows_answered), 0) AS rows_answered, count(*) AS requests,
                       coalesce(sum(seconds), 0) AS request_seconds, coalesce(sum(cost_usd), 0) AS cost_usd,
                       coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
                       coalesce(sum(completion_tokens), 0) AS completion_tokens,
                       coalesce(bool_or(tokens_estimated), false) AS tokens_estimated
                FROM {CACHE_SCHEMA}.teacher_ledger WHERE task = ?""",
            [task],
        ).iloc[0]
        return row.to_dict()

    def ledger_by_run(self, task: str) -> pd.DataFrame:
        self.ensure_cache_tables()  # a warehouse from before a column (batch_id) gets it before it is read
        return self.read_df(
            f"""SELECT run_id, min(requested_at) AS started, count(*) AS requests, sum(rows_answered) AS rows,
                       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
                       sum(cost_usd) AS cost_usd, sum(seconds) AS request_seconds,
                       string_agg(DISTINCT response_format, ', ') AS response_format,
                       count(batch_id) AS batch_requests
                FROM {CACHE_SCHEMA}.teacher_ledger WHERE task = ? GROUP BY run_id ORDER BY started""",
            [task],
        )


def vector_cache_table(model: str) -> str:
    return f"{CACHE_SCHEMA}.vectors_{hashlib.sha256(model.encode()).hexdigest()[:12]}"


class WarehouseAnswerCache:
    """The flow's `AnswerCache` over the warehouse, for one (provider, model, prompt version, task, run)."""

    def __init__(self, warehouse: CachesAndLedger, key: dict):
        self.warehouse, self.key = warehouse, key
        folder = warehouse.journal_folder()
        self.journal = AnswerJournal(folder, key) if folder else None

    def lookup(self, hashes: list[str]) -> dict[str, Answer]:
        return self.warehouse.cached_answers(
            self.key["provider"], self.key["model"], self.key["prompt_version"], hashes
        )

    def store(self, answered: list[dict], ledger: list[dict]) -> None:
        self.warehouse.store_answers(self.key, answered, ledger)

    @property
    def batches(self) -> WarehouseBatchRegistry:
        return WarehouseBatchRegistry(self.warehouse, self.key)


class WarehouseBatchRegistry:
    """The Batch API files and batches of one (provider, model, prompt version), in `teacher_batches`: each
    written at once, in its own transaction, so a killed run leaves them for the next to resume."""

    def __init__(self, warehouse: CachesAndLedger, key: dict):
        self.warehouse, self.key = warehouse, key

    def open_files(self) -> list[dict]:
        rows = self.warehouse.read_df(
            f"""SELECT file_id, batch_id, requests FROM {CACHE_SCHEMA}.teacher_batches
                WHERE provider = ? AND model = ? AND prompt_version = ? AND status IS NULL ORDER BY submitted_at""",
            [self.key["provider"], self.key["model"], self.key["prompt_version"]],
        )
        return [
            {"file_id": r.file_id, "batch_id": r.batch_id, "requests": json.loads(r.requests)}
            for r in rows.itertuples()
        ]

    def record_file(self, file_id: str, requests: dict[str, list]) -> None:
        k = self.key
        with self.warehouse.get_connection() as conn:
            conn.execute(
                f"""INSERT INTO {CACHE_SCHEMA}.teacher_batches
                    (file_id, provider, model, prompt_version, task, run_id, requests, rows, submitted_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    file_id,
                    k["provider"],
                    k["model"],
                    k["prompt_version"],
                    k["task"],
                    k["run_id"],
                    json.dumps(requests),
                    sum(len(r) for r in requests.values()),
                    utc_now(),
                ],
            )

    def record_batch(self, file_id: str, batch_id: str) -> None:
        with self.warehouse.get_connection() as conn:
            conn.execute(
                f"UPDATE {CACHE_SCHEMA}.teacher_batches SET batch_id = ? WHERE file_id = ?", [batch_id, file_id]
            )

    def close(self, file_id: str, status: str, note: str) -> None:
        with self.warehouse.get_connection() as conn:
            conn.execute(
                f"UPDATE {CACHE_SCHEMA}.teacher_batches SET status = ?, note = ?, closed_at = ? WHERE file_id = ?",
                [status, note, utc_now(), file_id],
            )
