"""The warehouse's tables and embeddings: atomic table swaps, vectors as FLOAT[d] arrays, the embedder's model."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from scalellm_dagster.core.heartbeat import phase
from scalellm_dagster.embedding_arrow import embedding_batch, ids_and_matrix
from scalellm_dagster.names import CORPUS, EMBEDDINGS
from scalellm_dagster.resources.duckdb_sql import frame_to_arrow, quote, relation_kind, transaction

CACHE_SCHEMA = "scalellm_cache"


class TablesAndEmbeddings:
    """Mixed into `Warehouse`: needs its `get_connection`."""

    def write_table(
        self,
        table: str,
        data: pd.DataFrame | pa.Table | pa.RecordBatchReader,
        same_transaction: list[tuple[str, list]] | None = None,
        keep_ids=None,
        raw_floats: bool = False,
    ) -> int:
        """Replace `table` ("name" or "schema.name") in one transaction; returns the rows written.

        Readers see the old table or the new one, never a part: a failure or a kill mid-write rolls back.
        `same_transaction` are further (sql, params) statements committed in the same transaction. `keep_ids`: rows
        of the old table with these ids are carried into the new one, ahead of `data`, without passing through Python.
        `raw_floats`: store float columns uncompressed, for vectors (compressing float noise saves
        little space and slows the write most, BENCHMARKS.md "Embedding speed"), with DuckDB's buffers bounded.
        """
        phase(f"writing {table} to the warehouse" + (f" ({len(data):,} rows)" if hasattr(data, "__len__") else ""))
        if isinstance(data, pd.DataFrame):
            data = frame_to_arrow(data, self._corpus_id_type(data))
        schema = table.split(".")[0] if "." in table else None
        with self.get_connection() as conn:
            conn.register("_incoming", data)
            if keep_ids is not None:
                conn.register("_keep", pa.table({"id": pa.array(np.asarray(keep_ids))}))
            settings = write_settings(conn, raw_floats, self.configured_memory_limit)
            try:
                with transaction(conn):
                    if schema:
                        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    kept = ""
                    if keep_ids is not None:
                        kept = f"SELECT * FROM {quote(table)} WHERE id IN (SELECT id FROM _keep) UNION ALL BY NAME "
                    if relation_kind(conn, table) == "VIEW":  # left by the sharded graph of older versions
                        if kept:  # the kept rows live in the files behind the view: copy them out first
                            conn.execute(f"CREATE TEMP TABLE _kept AS {kept.removesuffix(' UNION ALL BY NAME ')}")
                            kept = "SELECT * FROM _kept UNION ALL BY NAME "
                        conn.execute(f"DROP VIEW {quote(table)}")
                    conn.execute(f"CREATE OR REPLACE TABLE {quote(table)} AS {kept}SELECT * FROM _incoming")
                    if kept.startswith("SELECT * FROM _kept"):
                        conn.execute("DROP TABLE _kept")
                    rows = conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]
                    for sql, params in same_transaction or []:
                        conn.execute(sql, params)
            finally:
                for restore in settings:
                    conn.execute(restore)
                conn.unregister("_incoming")
                if keep_ids is not None:
                    conn.unregister("_keep")
        return int(rows)

    def replace_rows(
        self, table: str, data: pd.DataFrame, keep_ids, same_transaction: list[tuple[str, list]] | None = None
    ) -> int:
        """Change `table` in place, in one transaction: every row whose id is not in `keep_ids` is deleted and
        `data`'s rows are inserted; the kept rows are not rewritten. Returns the table's rows after the change.
        Readers see the table before or after, never between; a failure or a kill rolls back."""
        incoming = frame_to_arrow(data, self._corpus_id_type(data))
        keep = np.asarray(keep_ids)
        with self.get_connection() as conn:
            conn.register("_incoming", incoming)
            conn.register("_keep", pa.table({"id": pa.array(keep)}))
            try:
                with transaction(conn):
                    if len(keep):
                        conn.execute(
                            f"DELETE FROM {quote(table)} t WHERE NOT EXISTS (SELECT 1 FROM _keep k WHERE k.id = t.id)"
                        )
                    else:
                        conn.execute(f"DELETE FROM {quote(table)}")
                    if len(data):
                        conn.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM _incoming")
                    rows = conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]
                    for sql, params in same_transaction or []:
                        conn.execute(sql, params)
            finally:
                conn.unregister("_incoming")
                conn.unregister("_keep")
        return int(rows)

    def append_tables(self, frames: dict[str, pd.DataFrame]) -> None:
        """Append each frame to its table (created on first use, columns matched by name), all in one transaction:
        a log and its detail rows land together or not at all."""
        with self.get_connection() as conn, transaction(conn):
            for i, (table, frame) in enumerate(frames.items()):
                if not len(frame):
                    continue
                name = f"_append_{i}"
                conn.register(name, frame_to_arrow(frame))
                if "." in table:
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{table.split(".")[0]}"')
                conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(table)} AS SELECT * FROM {name} WHERE false")
                conn.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM {name}")
                conn.unregister(name)

    def read_df(self, sql: str, params: list | None = None, ids=None) -> pd.DataFrame:
        """`ids`, when given, is readable in the query as the one-column table `_ids` (id)."""
        with self.get_connection() as conn:
            if ids is not None:
                conn.register("_ids", pa.table({"id": pa.array(np.asarray(ids))}))
            return conn.execute(sql, params or []).df()

    def _corpus_id_type(self, frame: pd.DataFrame) -> pa.DataType | None:
        """The corpus's id type, looked up only for an id column Arrow cannot type (empty, or all None)."""
        if "id" not in frame.columns or frame["id"].notna().any() or not self.table_exists(CORPUS):
            return None
        return self.id_type(CORPUS)

    def execute(self, sql: str, params: list | None = None) -> None:
        with self.get_connection() as conn:
            conn.execute(sql, params or [])

    def table_exists(self, table: str) -> bool:
        with self.get_connection() as conn:
            return relation_kind(conn, table) is not None

    def columns(self, table: str) -> list[str]:
        """The table's column names; empty when it does not exist."""
        schema, name = table.split(".") if "." in table else ("main", table)
        with self.get_connection() as conn:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                    "ORDER BY ordinal_position",
                    [schema, name],
                ).fetchall()
            ]

    def embedding_versions(self, table: str = EMBEDDINGS) -> set[str]:
        """The embedder versions the stored vectors were made by (one, but for a refresh in the middle of a change)."""
        with self.get_connection() as conn:
            return {row[0] for row in conn.execute(f"SELECT DISTINCT embedding_version FROM {quote(table)}").fetchall()}

    def row_count(self, table: str) -> int:
        with self.get_connection() as conn:
            return int(conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0])

    def id_type(self, table: str = CORPUS) -> pa.DataType:
        """The Arrow type of `table`'s id column: every table that carries a corpus id is written with it."""
        with self.get_connection() as conn:
            return conn.sql(f"SELECT id FROM {quote(table)} LIMIT 0").to_arrow_table().schema.field("id").type

    def write_embeddings(
        self,
        table: str,
        ids: np.ndarray | pd.Series,
        matrix: np.ndarray,
        text_hashes: list[str] | None = None,
        model: tuple[str, bytes] | None = None,
        version: str | None = None,
    ) -> int:
        """The vectors (and the text hash each was computed from); `model` = (name, pickled embedder) is saved in
        the same transaction, so stored vectors and the model that made them never disagree."""
        batch = embedding_batch(ids, matrix, text_hashes, version)
        return self.write_embedding_batches(table, batch.schema, [batch], model)

    def write_embedding_batches(
        self,
        table: str,
        schema: pa.Schema,
        batches,
        model: tuple[str, bytes] | None = None,
        keep_ids=None,
        same_transaction: list[tuple[str, list]] | None = None,
    ) -> int:
        """Like `write_embeddings`, from an iterable of batches consumed while DuckDB writes: a corpus's vectors
        never need to be in memory at once. `keep_ids`: stored vectors carried over unchanged (a refresh)."""
        same_transaction = list(same_transaction or []) + (_save_model_statements(*model) if model else [])
        return self.write_table(
            table,
            pa.RecordBatchReader.from_batches(schema, iter(batches)),
            same_transaction=same_transaction,
            keep_ids=keep_ids,
            raw_floats=True,
        )

    def vector_stats(self, table: str = EMBEDDINGS, relation_sql: str | None = None) -> pd.DataFrame:
        """id, dim, finite, norm for every stored vector, computed inside DuckDB (no matrix in Python memory).
        `relation_sql` reads another relation instead."""
        relation = relation_sql or quote(table)
        return self.read_df(
            f"""SELECT id, array_length(vector) AS dim,
                       list_bool_and(list_transform(vector::FLOAT[], lambda x: isfinite(x))) AS finite,
                       sqrt(list_sum(list_transform(vector::FLOAT[],
                                                    lambda x: CASE WHEN isfinite(x) THEN x * x ELSE 0 END))) AS norm
                FROM {relation}"""
        )

    def save_model(self, name: str, blob: bytes) -> None:
        with self.get_connection() as conn, transaction(conn):
            for sql, params in _save_model_statements(name, blob):
                conn.execute(sql, params)

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
        columns = self.read_df(f"SELECT * FROM {quote(table)} LIMIT 0").columns
        if "text_hash" not in columns or "embedding_version" not in columns:
            return None
        with self.get_connection() as conn:
            return conn.execute(f"SELECT id, text_hash FROM {quote(table)} WHERE embedding_version = ?", [version]).df()

    def read_embeddings(
        self, table: str = EMBEDDINGS, ids=None, relation_sql: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) through Arrow, with no Python object per row; in `ids` order when given.
        `relation_sql` reads another relation instead."""
        relation = relation_sql or quote(table)
        with self.get_connection() as conn:
            if ids is None:
                result = conn.sql(f"SELECT id, vector FROM {relation}").to_arrow_table()
            else:
                wanted = pa.table({"id": pa.array(np.asarray(ids)), "_pos": pa.array(np.arange(len(ids)))})
                conn.register("_wanted", wanted)
                result = conn.sql(
                    f"SELECT e.id, e.vector FROM _wanted w JOIN {relation} e ON e.id = w.id ORDER BY w._pos"
                ).to_arrow_table()
        return ids_and_matrix(result)

    def iter_embeddings(self, table: str = EMBEDDINGS, batch_rows: int = 131_072, scan_memory: str = "512MB"):
        """(ids, float32 matrix) blocks of a stored table, one rowid range at a time, so only a block (and at most
        `scan_memory` of DuckDB's buffers) is in memory. The connection and its lock are held while iterating."""
        with self.get_connection() as conn:
            # A plain streaming scan keeps every block it read in DuckDB's buffer cache (up to memory_limit).
            conn.execute(f"SET memory_limit = '{scan_memory}'")
            try:
                end = conn.sql(f"SELECT coalesce(max(rowid) + 1, 0) FROM {quote(table)}").fetchall()[0][0]
                for start in range(0, end, batch_rows):
                    yield ids_and_matrix(
                        conn.sql(
                            f"SELECT id, vector FROM {quote(table)} "
                            f"WHERE rowid >= {start} AND rowid < {start + batch_rows}"
                        ).to_arrow_table()
                    )
            finally:
                # The limit is the database's, not this connection's: it outlives the connection while a run keeps
                # the database open (warehouse_keep_open)
                conn.execute(f"SET memory_limit = '{self.configured_memory_limit}'")


# DuckDB's buffers while vectors stream in: the written blocks stay cached up to the memory limit otherwise, and
# at 1M rows they were most of the embedding step's peak (BENCHMARKS.md, issue #28)
VECTOR_WRITE_MEMORY = "512MB"


def _save_model_statements(name: str, blob: bytes) -> list[tuple[str, list]]:
    """A fitted model's pickle replaced by a delete and an insert. Not `INSERT OR REPLACE`: on a 229 MB LSA model
    that took DuckDB 13.0 s and 2.3 GB more memory, against 2.6 s and 0.95 GB (benchmarks/duckdb_costs.py)."""
    return [
        (f"CREATE SCHEMA IF NOT EXISTS {CACHE_SCHEMA}", []),
        (
            f"CREATE TABLE IF NOT EXISTS {CACHE_SCHEMA}.models "
            "(name VARCHAR PRIMARY KEY, blob BLOB, saved_at TIMESTAMP)",
            [],
        ),
        (f"DELETE FROM {CACHE_SCHEMA}.models WHERE name = ?", [name]),
        (f"INSERT INTO {CACHE_SCHEMA}.models VALUES (?, ?, now())", [name, blob]),
    ]


def write_settings(conn, raw_floats: bool, memory_limit: str) -> list[str]:
    """Sets the connection's settings for one write; returns the statements that undo them. Insertion order is
    kept: reads that stream a table in storage order (the simulated teacher's class centroids) stay reproducible.
    Settings are the database's, not the connection's, so a memory limit is set back to the configured one."""
    wanted = {}
    if raw_floats:
        # A debugging setting of DuckDB's: a version without it writes compressed, as before, only slower.
        wanted["force_compression"] = ("'uncompressed'", "RESET force_compression")
        wanted["memory_limit"] = (f"'{VECTOR_WRITE_MEMORY}'", f"SET memory_limit = '{memory_limit}'")
    undo = []
    for name, (value, restore) in wanted.items():
        try:
            conn.execute(f"SET {name} = {value}")
            undo.append(restore)
        except duckdb.Error:
            pass
    return undo
