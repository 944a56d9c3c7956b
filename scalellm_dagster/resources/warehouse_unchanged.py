"""What lets a refresh with nothing new end in seconds: which source read made the corpus, and the verdicts checks
reached on a table write, both in the warehouse beside the tables they are about.

`corpus` records the fingerprint of the source it read (files' sizes and mtimes, a table's rows and hash, and the
read's own settings) in its write's transaction; the next run that finds the same fingerprint does not read the
source again. A check records its verdict with its basis (the table writes it judged and the settings it judged
them by); a later run that finds the same basis reports that verdict again, with the run that reached it, instead
of scanning every row again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from scalellm_dagster.resources.duckdb_sql import relation_kind

SOURCE_READS = "scalellm_meta.source_reads"
VERDICTS = "scalellm_meta.check_verdicts"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    metadata: list  # [key, kind, value] entries (see `checks/carry_over.py`)
    run_id: str
    checked_at: str


class UnchangedLog:
    """Mixed into `Warehouse`: needs its `get_connection`."""

    @staticmethod
    def source_read_statements(run_id: str, read_key: str) -> list[tuple[str, list]]:
        """`same_transaction` statements for the corpus write: the source read it came from."""
        return [
            ("CREATE SCHEMA IF NOT EXISTS scalellm_meta", []),
            (f"CREATE TABLE IF NOT EXISTS {SOURCE_READS} (run_id VARCHAR, read_key VARCHAR, read_at TIMESTAMP)", []),
            (f"INSERT INTO {SOURCE_READS} VALUES (?, ?, now())", [run_id, read_key]),
        ]

    def source_read_key(self, run_id: str) -> str | None:
        """The fingerprint of the source read that the corpus write of `run_id` came from."""
        with self.get_connection() as conn:
            if relation_kind(conn, SOURCE_READS) is None:
                return None
            row = conn.execute(f"SELECT read_key FROM {SOURCE_READS} WHERE run_id = ? LIMIT 1", [run_id]).fetchone()
        return row[0] if row else None

    def record_verdict(self, check: str, basis: str, passed: bool, metadata: list, run_id: str) -> None:
        with self.get_connection() as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS scalellm_meta")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERDICTS} (check_name VARCHAR, basis VARCHAR, passed BOOLEAN, "
                "metadata VARCHAR, run_id VARCHAR, checked_at TIMESTAMP)"
            )
            conn.execute(
                f"INSERT INTO {VERDICTS} VALUES (?, ?, ?, ?, ?, now())",
                [check, basis, passed, json.dumps(metadata, default=str), run_id],
            )

    def verdict(self, check: str, basis: str) -> Verdict | None:
        """The latest verdict `check` reached on exactly this basis."""
        with self.get_connection() as conn:
            if relation_kind(conn, VERDICTS) is None:
                return None
            row = conn.execute(
                f"SELECT passed, metadata, run_id, checked_at::VARCHAR FROM {VERDICTS} WHERE check_name = ? AND "
                "basis = ? ORDER BY checked_at DESC, rowid DESC LIMIT 1",
                [check, basis],
            ).fetchone()
        return Verdict(bool(row[0]), json.loads(row[1]), row[2], row[3]) if row else None
