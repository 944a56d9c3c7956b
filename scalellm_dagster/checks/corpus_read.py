"""What a check compares a table with: the corpus its own run read, even when another run has replaced it since.

This is for the check that runs in the run that wrote the table. A check run on its own (no write of the table in
its run) compares the table as it stands with the corpus as it stands, and so reports a table gone stale.

Each write of `corpus`, `embeddings`, a sample or predictions logs which corpus write it derived from (see
`resources/warehouse_snapshots.py`). While the live corpus still has the ids that write read, the check joins row
by row as usual. When another run has replaced the corpus since, the check compares the table's id fingerprint, as
it stands, with the one logged for the corpus it read; when another run has replaced the table itself, it judges this
run's write by what was logged when it was written. Either way a later run cannot fail an earlier run's check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dagster import AssetCheckExecutionContext, AssetCheckResult

from scalellm_dagster.names import CORPUS
from scalellm_dagster.resources.warehouse import Snapshot, Warehouse


@dataclass
class CorpusRead:
    live: bool  # the live corpus has the ids this write read: compare row by row
    replaced_by: str | None  # another run has replaced this run's write of the table since
    own: Snapshot | None
    corpus: Snapshot | None  # the corpus write `own` derived from
    metadata: dict = field(default_factory=dict)

    def coverage(self, rows: int, fingerprint: int) -> str:
        """Row-level stand-in when the corpus has moved: is the id set (as it stands, or as logged) the one of the
        corpus this run read?"""
        if (rows, fingerprint) == (self.corpus.rows, self.corpus.ids_fingerprint):
            return "yes"
        return f"the ids differ from the {self.corpus.rows:,} of the corpus this run read ({rows:,} rows here)"

    def result_from_log(self) -> AssetCheckResult:
        """For a write another run has replaced since: judged by the row count and id fingerprint it logged."""
        if self.corpus is None:
            return AssetCheckResult(passed=True, metadata={**self.metadata, "note": "no corpus write logged for it"})
        coverage = self.coverage(self.own.rows, self.own.ids_fingerprint)
        return AssetCheckResult(
            passed=coverage == "yes",
            metadata={**self.metadata, "rows": self.own.rows, "ids_match_corpus_read": coverage},
        )


def corpus_read(context: AssetCheckExecutionContext, warehouse: Warehouse, table: str) -> CorpusRead:
    run_id = context.run.run_id
    own = warehouse.snapshot(table, run_id)
    if own is None or own.corpus_run_id is None:
        # A check run on its own judges the table as it stands against the corpus as it stands (a table made from
        # an older corpus fails: that is what a user re-running a check wants to know); so do tables written
        # before the log existed.
        return CorpusRead(live=True, replaced_by=None, own=own, corpus=None)
    latest = warehouse.snapshot(table)
    corpus = warehouse.snapshot(CORPUS, own.corpus_run_id)
    now = warehouse.snapshot(CORPUS)
    live = corpus is None or now is None or now.same_ids(corpus)
    replaced_by = latest.run_id if latest is not None and latest.run_id != own.run_id else None
    metadata = {
        "corpus_compared": (
            f"as read by run {own.corpus_run_id[:8]}"
            + (f" ({corpus.rows:,} rows)" if corpus else "")
            + (
                ""
                if live
                else f"; run {now.run_id[:8]} has replaced it since ({now.rows:,} rows): compared by id fingerprint"
            )
        )
    }
    if replaced_by:
        metadata["table_replaced"] = (
            f"run {replaced_by[:8]} has replaced this run's {table} since: judged by the "
            "row count and id fingerprint logged when it was written"
        )
    return CorpusRead(live=live, replaced_by=replaced_by, own=own, corpus=corpus, metadata=metadata)
