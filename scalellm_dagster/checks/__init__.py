"""Asset checks backed by Great Expectations, one module per part of the graph. Each validates its suite as the
file in the checks' GX project has it (`gx_project.py`), through a checkpoint that stores the result and renders
its Data Docs page.

Great Expectations is imported inside the functions that build expectations, never at module level: its import
takes seconds, and a run that only materializes assets need not pay it."""

import warnings

from dagster import AssetChecksDefinition, AssetCheckSeverity, AssetKey, BetaWarning, build_column_schema_change_checks

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
    checks = [corpus_rows_valid_check(prefix), embeddings_match_corpus_check(prefix), *corpus_schema_checks(prefix)]
    for task in tasks:
        if task.gold_column:
            checks.append(gold_label_check(task))
        checks.extend(build_task_checks(task))
        if export:
            checks.append(export_matches_warehouse_check(task))
    return checks


def corpus_schema_checks(prefix: tuple[str, ...] = ()) -> list[AssetChecksDefinition]:
    """Dagster's own `column_schema_change` on the corpus: a column the source dropped, added or retyped since the
    previous read (from the `dagster/column_schema` each read records). A warning: the corpus asset already refuses a
    source without its id or text column, and a task's gold check fails when its gold column goes."""
    from scalellm_dagster.names import CORPUS, key_path

    with warnings.catch_warnings():  # beta in Dagster 1.13: the warning would print at every code location load
        warnings.simplefilter("ignore", BetaWarning)
        return list(
            build_column_schema_change_checks(
                assets=[AssetKey(key_path(prefix, CORPUS))], severity=AssetCheckSeverity.WARN
            )
        )
