"""Small DuckDB and Arrow helpers shared by the warehouse's parts."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime

import duckdb
import pyarrow as pa


def utc_now() -> datetime:
    """Now in UTC, naive: what the warehouse's TIMESTAMP columns hold."""
    return datetime.now(UTC).replace(tzinfo=None)


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
    found = conn.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchone()
    return found[0] if found else None


def quote(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


def frame_to_arrow(frame, id_type: pa.DataType | None = None) -> pa.Table:
    """A frame as Arrow with no column of type null: Arrow types an all-None (or empty) object column as null, and
    DuckDB would create a NULL-typed column that every later value is lost in. Such a column is text in every
    table of ours (an error, an answer, a label), and an id column takes the corpus's id type (`id_type`)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            wanted = id_type if field.name == "id" and id_type is not None else pa.string()
            table = table.set_column(i, field.name, table.column(i).cast(wanted))
    return table
