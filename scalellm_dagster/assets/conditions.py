"""The assets' automation conditions (which asset follows new data, which waits for a reason to change the model)
and the source's version that `corpus_source_sensor` reports and `corpus` records. scalellm_dagster/automation.py
has the picture."""

from __future__ import annotations

import hashlib

from dagster import AssetKey, AssetSelection, AutomationCondition

from scalellm_dagster.resources.source import CorpusSource
from scalellm_dagster.tasks_config import TaskSpec

# Missing when the automation first sees it: a task just added to the tasks file. `eager` alone would leave it
# (Dagster runs only what *becomes* missing after a condition is applied); this runs it once.
NEW_AND_MISSING = (AutomationCondition.missing() & AutomationCondition.initial_evaluation()).with_label("new, missing")


def _when(reasons: AutomationCondition, label: str) -> AutomationCondition:
    """`eager`'s guards around other reasons: once per reason, never over missing or running parents, never twice."""
    return (
        AutomationCondition.in_latest_time_window()
        # outside `since_last_handled`, whose reset counts a key's first evaluation as handled
        & (reasons.since_last_handled() | NEW_AND_MISSING)
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label(label)


# What follows new data: materialize when an upstream asset has a new version (or the asset is missing).
FOLLOW_THE_DATA = _when(
    AutomationCondition.newly_missing() | AutomationCondition.any_deps_updated(), "eager: follows new data"
)


def model_condition(task: TaskSpec) -> AutomationCondition:
    """The head of a task's model chain: never from new data alone."""
    reasons = AutomationCondition.newly_missing() | AutomationCondition.code_version_changed()
    label = "model: new, missing or definition changed"
    if task.retrain_cron:
        reasons = reasons | AutomationCondition.cron_tick_passed(task.retrain_cron)
        label += f" or retrain schedule {task.retrain_cron}"
    return _when(reasons, label)


def follows_the_model(embeddings: AssetKey) -> AutomationCondition:
    """The candidates and the report: after the sample, not after new embeddings (they read the sample's vectors)."""
    updated = AutomationCondition.any_deps_updated().ignore(AssetSelection.keys(embeddings))
    return _when(AutomationCondition.newly_missing() | updated, "eager on the sample")


def source_version(source: CorpusSource, fingerprint: str | None = None) -> str:
    """The source's fingerprint (`fingerprint`, when the caller has it: a PostgreSQL one is a scan of the table) as a
    data version: changes when a file or a row changes."""
    return hashlib.sha256((fingerprint or source.fingerprint()).encode()).hexdigest()[:16]
