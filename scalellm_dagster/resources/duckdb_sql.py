"""Small DuckDB and Arrow helpers shared by the warehouse's parts."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection):
    """Everything in the block commits together or not at all (a failure or a kill rolls it back)."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def relation_kind(conn: duckdb.DuckDBPyConnection, table: str) -> str | None:
    """'BASE TABLE', 'VIEW' or None."""
    schema, name = table.split(".") if "." in table else ("main", table)
    found = conn.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                         [schema, name]).fetchone()
    return found[0] if found else None


def select_list(casts: dict[str, str] | None) -> str:
    # Parquet keeps FLOAT[d] arrays as lists; the cast gives readers the fixed-size array type back.
    if not casts:
        return "*"
    return "* REPLACE (" + ", ".join(f'"{c}"::{t} AS "{c}"' for c, t in casts.items()) + ")"


def sql_str(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def quote(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


def ids_and_matrix(result: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    ids = result.column("id").to_numpy()
    column = result.column("vector").combine_chunks()
    if len(column) == 0:
        return ids, np.zeros((0, 0), dtype=np.float32)
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return ids, matrix
