"""The warehouse's shard files: one Parquet file per shard, published as one view.

Parallel shard runs cannot all write the DuckDB file (one writer per file), so each writes its own file and the
warehouse only holds a view over them; the view is redefined, briefly, once every shard has a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from scalellm_dagster.resources.duckdb_sql import ids_and_matrix, quote, relation_kind, select_list, sql_str, transaction


class ShardFiles:
    """Mixed into `Warehouse`: needs its `database` and `get_connection`."""

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
        return f"(SELECT {select_list(casts)} FROM read_parquet({sql_str(self.shard_path(relation, shard, shards))}))"

    def publish_shards(self, relation: str, shards: int, casts: dict[str, str] | None = None) -> bool:
        """Define `relation` as a view over its shard files once every shard has one; returns whether it did."""
        paths = [self.shard_path(relation, k, shards) for k in range(shards)]
        if not all(p.exists() for p in paths):
            return False
        # relative to the warehouse's folder (its connections' file_search_path): a copied folder reads its own files
        files = "[" + ", ".join(sql_str(p.relative_to(Path(self.database).parent)) for p in paths) + "]"
        schema = relation.split(".")[0] if "." in relation else None
        with self.get_connection() as conn:
            with transaction(conn):
                if schema:
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                if relation_kind(conn, relation) == "BASE TABLE":  # left by an unsharded run
                    conn.execute(f"DROP TABLE {quote(relation)}")
                conn.execute(f"CREATE OR REPLACE VIEW {quote(relation)} AS "
                             f"SELECT {select_list(casts)} FROM read_parquet({files})")
        return True

    def iter_shard_embeddings(self, table: str, shards: int):
        """(ids, float32 matrix) per shard file, read without DuckDB (no lock held)."""
        for shard in range(shards):
            found = self.read_shard(table, shard, shards, columns=["id", "vector"])
            if found is not None:
                yield ids_and_matrix(found)
