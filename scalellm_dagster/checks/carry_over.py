"""A check's verdict carried over when nothing it judges has changed since a run reached it.

A refresh that finds its source unchanged writes no table (`corpus`, `embeddings` and `predictions` say
"unchanged"), so every row-by-row scan would judge again exactly what an earlier run judged. The verdict's basis is
the logged write of each table the check reads (run, rows, id fingerprint), the table's row count as it stands, the
expectations' settings and the package's version; the same basis gives back the same verdict, its evidence and the
run that reached it. A verdict is carried only when the checked asset's own step found it unchanged in the same
run: a check run on its own (from the UI, after a table was written by hand) scans every row. Only verdicts on tables
as they stand are recorded (not those a check reached on a write another run had replaced, or against a corpus that
had moved on).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue

from scalellm_dagster.resources.warehouse import Warehouse
from scalellm_dagster.version import __version__

# How a metadata value is kept in the warehouse and rebuilt: Dagster's own classes by their names.
_KINDS = {
    "MarkdownMetadataValue": MetadataValue.md,
    "JsonMetadataValue": MetadataValue.json,
    "UrlMetadataValue": MetadataValue.url,  # the Data Docs page of the run that reached the verdict
    "PathMetadataValue": MetadataValue.path,
}


def basis(warehouse: Warehouse, tables: list[str], *settings) -> str | None:
    """What the verdict depends on; None when a table has no logged write (it is judged anew)."""
    parts = []
    for table in tables:
        snap = warehouse.snapshot(table)
        if snap is None or not warehouse.table_exists(table):
            return None
        parts.append([table, snap.run_id, snap.rows, snap.ids_fingerprint, warehouse.row_count(table)])
    return _key(parts, settings)


def verdict_on_write(warehouse: Warehouse, name: str, table: str, run_id: str | None, *settings):
    """The verdict `name` reached on `table` as run `run_id` wrote it, under these settings (a check that reads
    that one table); None when there is none."""
    snap = warehouse.snapshot(table, run_id) if run_id else None
    if snap is None:
        return None
    return warehouse.verdict(name, _key([[table, snap.run_id, snap.rows, snap.ids_fingerprint, snap.rows]], settings))


def _key(parts: list, settings: tuple) -> str:
    # the package's version stands for the expectations' code (building them would import GX, seconds)
    return hashlib.sha256(json.dumps([parts, [repr(s) for s in settings], __version__]).encode()).hexdigest()


def carried(context: AssetCheckExecutionContext, warehouse: Warehouse, name: str, key: str | None):
    """The verdict reached on the same basis, as this run's result; None when there is none, or when the checked
    asset was not found `unchanged` by its own step in this run (a check run on its own, say from the UI, or after
    a table was written by hand, scans every row)."""
    found = warehouse.verdict(name, key) if key and _unchanged_in_this_run(context) else None
    if found is None:
        return None
    note = (
        f"carried over from run {found.run_id[:8]} ({found.checked_at[:19]} UTC): no table it reads was written "
        "since, so its rows were not scanned again"
    )
    context.log.info(f"{name}: {'passed' if found.passed else 'FAILED'}, {note}")
    metadata = {k: _KINDS.get(kind, lambda v: v)(value) for k, kind, value in found.metadata}
    return AssetCheckResult(
        passed=found.passed, metadata={**metadata, "verdict": note, "verdict_reached_by_run": found.run_id}
    )


def recorded(
    context: AssetCheckExecutionContext, warehouse: Warehouse, name: str, key: str | None, result: AssetCheckResult
) -> AssetCheckResult:
    """`result`, recorded under `key` for later runs (when there is a basis)."""
    if key:
        plain = [
            [k, type(v).__name__, v.value if isinstance(v, MetadataValue) else v] for k, v in result.metadata.items()
        ]
        warehouse.record_verdict(name, key, bool(result.passed), plain, context.run.run_id)
    return result


def carried_or_judged(
    context: AssetCheckExecutionContext,
    warehouse: Warehouse,
    name: str,
    key: Callable[[], str | None],
    judge: Callable[[], AssetCheckResult],
) -> AssetCheckResult:
    """The verdict carried over on the same basis, else `judge()`'s, recorded for later runs. The basis is
    computed again after judging: a check's first run writes its suite's file, which the basis holds."""
    found = carried(context, warehouse, name, key())
    if found is not None:
        return found
    result = judge()  # before the basis is taken again
    return recorded(context, warehouse, name, key(), result)


def _unchanged_in_this_run(context: AssetCheckExecutionContext) -> bool:
    [asset_key] = {spec.asset_key for spec in context.check_specs}
    event = context.instance.get_latest_materialization_event(asset_key)
    if event is None or event.run_id != context.run.run_id or event.asset_materialization is None:
        return False
    return "unchanged" in event.asset_materialization.metadata
