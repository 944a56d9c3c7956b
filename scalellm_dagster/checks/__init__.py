"""Asset checks backed by Great Expectations, one module per part of the graph.

Great Expectations is imported inside the functions that build expectations, never at module level: its import
takes seconds, and a run that only materializes assets need not pay it."""

from dagster import AssetChecksDefinition

from scalellm_dagster.checks.export_checks import export_matches_warehouse_check
from scalellm_dagster.checks.shared_checks import (
    corpus_rows_valid_check,
    embeddings_match_corpus_check,
    gold_label_check,
)
from scalellm_dagster.checks.task_checks import build_task_checks
from scalellm_dagster.tasks_config import TaskSpec


def build_checks(
    tasks: list[TaskSpec], export: bool = False, prefix: tuple[str, ...] = ()
) -> list[AssetChecksDefinition]:
    """Every check of the component instance with `prefix` (none: the code location's)."""
    checks = [corpus_rows_valid_check(prefix), embeddings_match_corpus_check(prefix)]
    for task in tasks:
        if task.gold_column:
            checks.append(gold_label_check(task))
        checks.extend(build_task_checks(task))
        if export:
            checks.append(export_matches_warehouse_check(task))
    return checks
