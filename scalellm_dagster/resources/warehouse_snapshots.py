"""Which corpus each table was computed from: one log row per write, committed in the write's own transaction.

Checks compare a table with the corpus its own run read, not with whatever `corpus` holds when the check runs: a
run that replaced the corpus in between (a second run, a materialization by hand) cannot fail an earlier run's
check. The log keeps each write's row count and an order-free fingerprint of its ids, so a check can still judge a
write after a later run has replaced the table itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scalellm_dagster.resources.duckdb_sql import quote, relation_kind

SNAPSHOTS = "scalellm_meta.snapshots"
# (rows, xor of hash(id)): equal id sets give equal values whatever the order
FINGERPRINT_SQL = "count(*), coalesce(bit_xor(hash(id)), 0)"


@dataclass(frozen=True)
class Snapshot:
    table: str
    run_id: str
    corpus_run_id: str | None  # the corpus write this table was derived from (its own run_id for the corpus)
    rows: int
    ids_fingerprint: int  # xor of hash(id): equal id sets give equal values whatever the order
    written_at: object = None  # a naive UTC datetime

    def same_ids(self, other: Snapshot) -> bool:
        return (self.rows, self.ids_fingerprint) == (other.rows, other.ids_fingerprint)


class SnapshotLog:
    """Mixed into `Warehouse`: needs its `get_connection`."""

    @staticmethod
    def snapshot_statements(table: str, run_id: str, corpus_run_id: str | None) -> list[tuple[str, list]]:
        """`same_transaction` statements for `write_table`: log the table as just written, in the same transaction."""
        return [
            ("CREATE SCHEMA IF NOT EXISTS scalellm_meta", []),
            (
                f"CREATE TABLE IF NOT EXISTS {SNAPSHOTS} (table_name VARCHAR, run_id VARCHAR, corpus_run_id VARCHAR, "
                "rows BIGINT, ids_fingerprint UBIGINT, written_at TIMESTAMP)",
                [],
            ),
            (
                f"INSERT INTO {SNAPSHOTS} SELECT ?, ?, ?, {FINGERPRINT_SQL}, now() FROM {quote(table)}",
                [table, run_id, corpus_run_id],
            ),
        ]

    def snapshot(self, table: str, run_id: str | None = None) -> Snapshot | None:
        """The latest logged write of `table` (by `run_id` when given); None when none is logged."""
        with self.get_connection() as conn:
            return _snapshot(conn, table, run_id)

    def id_fingerprint(self, relation: str) -> tuple[int, int]:
        """(rows, xor of hash(id)) of a table as it stands: what its logged snapshot would say now."""
        with self.get_connection() as conn:
            rows, fingerprint = conn.execute(f"SELECT {FINGERPRINT_SQL} FROM {relation}").fetchone()
        return int(rows), int(fingerprint)

    def read_df_with_snapshot(self, sql: str, table: str) -> tuple[pd.DataFrame, Snapshot | None]:
        """The query's rows and the latest logged write of `table`, read under one lock: they agree."""
        with self.get_connection() as conn:
            return conn.execute(sql).df(), _snapshot(conn, table, None)


def _snapshot(conn, table: str, run_id: str | None) -> Snapshot | None:
    if relation_kind(conn, SNAPSHOTS) is None:
        return None
    row = conn.execute(
        f"SELECT table_name, run_id, corpus_run_id, rows, ids_fingerprint, written_at FROM {SNAPSHOTS} "
        "WHERE table_name = ? AND (? IS NULL OR run_id = ?) ORDER BY written_at DESC, rowid DESC "
        "LIMIT 1",
        [table, run_id, run_id],
    ).fetchone()
    return Snapshot(row[0], row[1], row[2], int(row[3]), int(row[4]), row[5]) if row else None
