"""The DuckDB warehouse: atomic table swaps, embeddings as FLOAT[d] arrays, the teacher's cache and ledger.

DuckDB lets one process hold a database file at a time, and Dagster runs each step in its own process. So every
method opens a connection, does its I/O and closes it at once (heavy compute happens outside), and opening waits
with jittered backoff while another step holds the file instead of failing.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster_duckdb import DuckDBResource
from pydantic import Field

from scalellm_dagster.teachers.base import Answer

CACHE_SCHEMA = "scalellm_cache"


class WarehouseLockTimeout(RuntimeError):
    pass


class Warehouse(DuckDBResource):
    """`DuckDBResource` with the project's table conventions."""

    lock_timeout_seconds: float = Field(default=300.0, description="How long to wait for another process's lock.")
    memory_limit: str = Field(default="2GB", description="DuckDB's buffer memory per connection; it spills beyond.")

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect_waiting_for_lock()
        try:
            yield conn
        finally:
            conn.close()

    def _connect_waiting_for_lock(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                return duckdb.connect(self.database, config={"custom_user_agent": "scalellm",
                                                             "memory_limit": self.memory_limit,
                                                             **self.connection_config})
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() > deadline:
                    raise WarehouseLockTimeout(
                        f"could not open {self.database}: another process has held its lock for more than "
                        f"{self.lock_timeout_seconds:.0f}s ({exc})"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)

    # ---- generic tables -------------------------------------------------------------------------------------

    def write_table(self, table: str, data: pd.DataFrame | pa.Table | pa.RecordBatchReader,
                    also: list[tuple[str, list]] | None = None) -> int:
        """Replace `table` ("name" or "schema.name") in one transaction; returns the rows written.

        Readers see the old table or the new one, never a part: a failure or a kill mid-write rolls back.
        `also` are further (sql, params) statements committed in the same transaction.
        """
        if isinstance(data, pd.DataFrame):
            data = pa.Table.from_pandas(data, preserve_index=False)
        schema = table.split(".")[0] if "." in table else None
        with self.get_connection() as conn:
            conn.register("_incoming", data)
            try:
                with _transaction(conn):
                    if schema:
                        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    if _kind(conn, table) == "VIEW":  # it was published from shards; an unsharded run replaces it
                        conn.execute(f"DROP VIEW {_quote(table)}")
                    conn.execute(f"CREATE OR REPLACE TABLE {_quote(table)} AS SELECT * FROM _incoming")
                    rows = conn.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()[0]
                    for sql, params in also or []:
                        conn.execute(sql, params)
            finally:
                conn.unregister("_incoming")
        return int(rows)

    def read_df(self, sql: str, params: list | None = None, ids=None) -> pd.DataFrame:
        """`ids`, when given, is readable in the query as the one-column table `_ids` (id)."""
        with self.get_connection() as conn:
            if ids is not None:
                conn.register("_ids", pa.table({"id": pa.array(np.asarray(ids))}))
            return conn.execute(sql, params or []).df()

    def table_exists(self, table: str) -> bool:
        with self.get_connection() as conn:
            return _kind(conn, table) is not None

    def row_count(self, table: str) -> int:
        with self.get_connection() as conn:
            return int(conn.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()[0])

    # ---- embeddings -----------------------------------------------------------------------------------------

    def write_embeddings(self, table: str, ids: np.ndarray | pd.Series, matrix: np.ndarray,
                         text_hashes: list[str] | None = None, model: tuple[str, bytes] | None = None,
                         version: str | None = None) -> int:
        """The vectors (and the text hash each was computed from); `model` = (name, pickled embedder) is saved in
        the same transaction, so stored vectors and the model that made them never disagree."""
        batch = embedding_batch(ids, matrix, text_hashes, version)
        return self.write_embedding_batches(table, batch.schema, [batch], model)

    def write_embedding_batches(self, table: str, schema: pa.Schema, batches, model: tuple[str, bytes] | None = None
                                ) -> int:
        """Like `write_embeddings`, from an iterable of batches consumed while DuckDB writes: a corpus's vectors
        never need to be in memory at once."""
        also = []
        if model is not None:
            also = [(f"CREATE SCHEMA IF NOT EXISTS {CACHE_SCHEMA}", []),
                    (f"CREATE TABLE IF NOT EXISTS {CACHE_SCHEMA}.models "
                     "(name VARCHAR PRIMARY KEY, blob BLOB, saved_at TIMESTAMP)", []),
                    (f"INSERT OR REPLACE INTO {CACHE_SCHEMA}.models VALUES (?, ?, now())", [model[0], model[1]])]
        return self.write_table(table, pa.RecordBatchReader.from_batches(schema, iter(batches)), also=also)

    def vector_stats(self, table: str = "embeddings", relation_sql: str | None = None) -> pd.DataFrame:
        """id, dim, finite, norm for every stored vector, computed inside DuckDB (no matrix in Python memory).
        `relation_sql` reads another relation instead, e.g. one shard's file."""
        relation = relation_sql or _quote(table)
        return self.read_df(
            f"""SELECT id, array_length(vector) AS dim,
                       list_bool_and(list_transform(vector::FLOAT[], lambda x: isfinite(x))) AS finite,
                       sqrt(list_sum(list_transform(vector::FLOAT[],
                                                    lambda x: CASE WHEN isfinite(x) THEN x * x ELSE 0 END))) AS norm
                FROM {relation}""")

    def save_model(self, name: str, blob: bytes) -> None:
        with self.get_connection() as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {CACHE_SCHEMA}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {CACHE_SCHEMA}.models "
                         "(name VARCHAR PRIMARY KEY, blob BLOB, saved_at TIMESTAMP)")
            conn.execute(f"INSERT OR REPLACE INTO {CACHE_SCHEMA}.models VALUES (?, ?, now())", [name, blob])

    def load_model(self, name: str) -> bytes | None:
        if not self.table_exists(f"{CACHE_SCHEMA}.models"):
            return None
        with self.get_connection() as conn:
            found = conn.execute(f"SELECT blob FROM {CACHE_SCHEMA}.models WHERE name = ?", [name]).fetchone()
        return bytes(found[0]) if found else None

    def embedding_state(self, table: str, version: str) -> pd.DataFrame | None:
        """(id, text_hash) of the stored vectors made by embedding `version`, or None when there are none or no
        hashes were kept. Vectors of another version (another embedder or fit) are never reused beside new ones."""
        if not self.table_exists(table):
            return None
        columns = self.read_df(f"SELECT * FROM {_quote(table)} LIMIT 0").columns
        if "text_hash" not in columns or "embedding_version" not in columns:
            return None
        with self.get_connection() as conn:
            return conn.execute(f"SELECT id, text_hash FROM {_quote(table)} WHERE embedding_version = ?",
                                [version]).df()

    def read_embeddings(self, table: str = "embeddings", ids=None, relation_sql: str | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) through Arrow, with no Python object per row; in `ids` order when given.
        `relation_sql` reads another relation instead, e.g. one shard's file."""
        relation = relation_sql or _quote(table)
        with self.get_connection() as conn:
            if ids is None:
                result = conn.sql(f"SELECT id, vector FROM {relation}").to_arrow_table()
            else:
                wanted = pa.table({"id": pa.array(np.asarray(ids)), "_pos": pa.array(np.arange(len(ids)))})
                conn.register("_wanted", wanted)
                result = conn.sql(
                    f"SELECT e.id, e.vector FROM _wanted w JOIN {relation} e ON e.id = w.id ORDER BY w._pos"
                ).to_arrow_table()
        return _ids_and_matrix(result)

    def iter_embeddings(self, table: str = "embeddings", batch_rows: int = 131_072, scan_memory: str = "512MB"):
        """(ids, float32 matrix) blocks of a stored table, one rowid range at a time, so only a block (and at most
        `scan_memory` of DuckDB's buffers) is in memory. The connection and its lock are held while iterating."""
        with self.get_connection() as conn:
            # A plain streaming scan keeps every block it read in DuckDB's buffer cache (up to memory_limit).
            conn.execute(f"SET memory_limit = '{scan_memory}'")
            end = conn.sql(f"SELECT coalesce(max(rowid) + 1, 0) FROM {_quote(table)}").fetchall()[0][0]
            for start in range(0, end, batch_rows):
                yield _ids_and_matrix(conn.sql(
                    f"SELECT id, vector FROM {_quote(table)} WHERE rowid >= {start} AND rowid < {start + batch_rows}"
                ).to_arrow_table())

    def iter_shard_embeddings(self, table: str, shards: int):
        """(ids, float32 matrix) per shard file, read without DuckDB (no lock held)."""
        for shard in range(shards):
            found = self.read_shard(table, shard, shards, columns=["id", "vector"])
            if found is not None:
                yield _ids_and_matrix(found)

    # ---- shards: one Parquet file per shard, published as one view -----------------------------------------
    # Parallel shard runs cannot all write the DuckDB file (one writer per file), so each writes its own file and
    # the warehouse only holds a view over them; the view is redefined, briefly, once every shard has a file.

    def shard_path(self, relation: str, shard: int, shards: int) -> Path:
        if self.database == ":memory:":
            raise ValueError("sharded tables need a warehouse file: set SCALELLM_DUCKDB_PATH (not :memory:)")
        db = Path(self.database)
        return db.parent / f"{db.stem}.shards" / Path(*relation.split(".")) / f"part-{shard:03d}-of-{shards:03d}.parquet"

    def write_shard(self, relation: str, shard: int, shards: int, schema: pa.Schema, batches) -> int:
        """Write one shard's file from an iterable of record batches; readers see the old file or the new one."""
        path = self.shard_path(relation, shard, shards)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
        rows = 0
        try:
            with pq.ParquetWriter(partial, schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    rows += batch.num_rows
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return rows

    def read_shard(self, relation: str, shard: int, shards: int, columns: list[str] | None = None) -> pa.Table | None:
        path = self.shard_path(relation, shard, shards)
        return pq.read_table(path, columns=columns) if path.exists() else None

    def shard_relation(self, relation: str, shard: int, shards: int, casts: dict[str, str] | None = None) -> str:
        """SQL reading one shard's file, with the same column types as the published view."""
        return f"(SELECT {_select(casts)} FROM read_parquet({_sql_str(self.shard_path(relation, shard, shards))}))"

    def publish_shards(self, relation: str, shards: int, casts: dict[str, str] | None = None) -> bool:
        """Define `relation` as a view over its shard files once every shard has one; returns whether it did."""
        paths = [self.shard_path(relation, k, shards) for k in range(shards)]
        if not all(p.exists() for p in paths):
            return False
        files = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
        schema = relation.split(".")[0] if "." in relation else None
        with self.get_connection() as conn:
            with _transaction(conn):
                if schema:
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                if _kind(conn, relation) == "BASE TABLE":  # left by an unsharded run
                    conn.execute(f"DROP TABLE {_quote(relation)}")
                conn.execute(f"CREATE OR REPLACE VIEW {_quote(relation)} AS "
                             f"SELECT {_select(casts)} FROM read_parquet({files})")
        return True

    # ---- teacher cache and ledger --------------------------------------------------------------------------

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
                    cost_usd DOUBLE, seconds DOUBLE, tokens_estimated BOOLEAN, requested_at TIMESTAMP)"""
            )

    def cached_vectors(self, model: str, hashes: list[str]) -> dict[str, np.ndarray]:
        """Vectors already paid for from `model`, by text hash (OpenAI-compatible embedders only)."""
        table = _vector_cache_table(model)
        if not hashes or not self.table_exists(table):
            return {}
        with self.get_connection() as conn:
            conn.register("_hashes", pa.table({"text_hash": pa.array(hashes, pa.string())}))
            found = conn.sql(
                f"SELECT c.text_hash AS id, c.vector FROM {table} c SEMI JOIN _hashes h ON c.text_hash = h.text_hash"
            ).to_arrow_table()
        ids, matrix = _ids_and_matrix(found)
        return dict(zip(ids.tolist(), matrix))

    def store_vectors(self, model: str, hashes: list[str], matrix: np.ndarray) -> None:
        table = _vector_cache_table(model)
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        incoming = pa.table({
            "text_hash": pa.array(hashes, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1]),
        })
        with self.get_connection() as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {CACHE_SCHEMA}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                         f"(text_hash VARCHAR PRIMARY KEY, vector FLOAT[{matrix.shape[1]}])")
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
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        answers_df = pd.DataFrame(answers, columns=["text_hash", "label", "raw_answer"])
        ledger_df = pd.DataFrame(ledger, columns=list(LEDGER_COLUMNS))
        with self.get_connection() as conn:
            with _transaction(conn):
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
                        SELECT ?, ?, ?, ?, ?, {", ".join(LEDGER_COLUMNS)}, ? FROM _ledger""",
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
                FROM {CACHE_SCHEMA}.teacher_ledger WHERE task = ?""", [task]).iloc[0]
        return row.to_dict()

    def ledger_by_run(self, task: str) -> pd.DataFrame:
        return self.read_df(
            f"""SELECT run_id, min(requested_at) AS started, count(*) AS requests, sum(rows_answered) AS rows,
                       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
                       sum(cost_usd) AS cost_usd, sum(seconds) AS request_seconds
                FROM {CACHE_SCHEMA}.teacher_ledger WHERE task = ? GROUP BY run_id ORDER BY started""", [task])


LEDGER_COLUMNS = ("rows_asked", "rows_answered", "prompt_tokens", "completion_tokens", "cost_usd", "seconds",
                  "tokens_estimated")


def embedding_batch(ids, matrix: np.ndarray, text_hashes: list[str] | None = None,
                    version: str | None = None) -> pa.RecordBatch:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    columns = {"id": pa.array(np.asarray(ids))}
    if text_hashes is not None:
        columns["text_hash"] = pa.array(text_hashes, pa.string())
    if version is not None:
        columns["embedding_version"] = pa.array([version] * len(matrix), pa.dictionary(pa.int32(), pa.string()))
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])
    return pa.RecordBatch.from_pydict(columns)


def _vector_cache_table(model: str) -> str:
    return f"{CACHE_SCHEMA}.vectors_{hashlib.sha256(model.encode()).hexdigest()[:12]}"


@contextmanager
def _transaction(conn: duckdb.DuckDBPyConnection):
    """Everything in the block commits together or not at all (a failure or a kill rolls it back)."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _kind(conn: duckdb.DuckDBPyConnection, table: str) -> str | None:
    """'BASE TABLE', 'VIEW' or None."""
    schema, name = table.split(".") if "." in table else ("main", table)
    found = conn.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                         [schema, name]).fetchone()
    return found[0] if found else None


def _select(casts: dict[str, str] | None) -> str:
    # Parquet keeps FLOAT[d] arrays as lists; the cast gives readers the fixed-size array type back.
    if not casts:
        return "*"
    return "* REPLACE (" + ", ".join(f'"{c}"::{t} AS "{c}"' for c, t in casts.items()) + ")"


def _sql_str(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _quote(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


def _ids_and_matrix(result: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    ids = result.column("id").to_numpy()
    column = result.column("vector").combine_chunks()
    if len(column) == 0:
        return ids, np.zeros((0, 0), dtype=np.float32)
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return ids, matrix
