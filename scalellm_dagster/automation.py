"""Declarative automation: which asset updates when, said on the assets themselves so the asset pages and the
Automation tab show why each run happened or waits.

- `corpus_source` is the outside data (a file, a folder of files, a DuckDB or PostgreSQL table): an external asset.
  `corpus_source_sensor` only *reports* a new version of it when the source's fingerprint changes; it launches
  nothing.
- `corpus`, `embeddings`, each task's `predictions`, `drift_audit` and export are `eager`: they follow new data.
- Each task's model chain (`labeled_sample` -> `student_candidates` -> `model_selection_report`) changes when its
  definition changes (`code_version_changed`: the code version is the task's fingerprint), when it was never made,
  or on its `retrain: {cron: ...}`; the candidates and the report follow the sample, not the embeddings.
- `model_policy_sensor` is the one sensor that launches runs, for the two rules no condition can state: a drift
  top-up due after failed audits in a row, and a corpus grown by the task's `retrain: {growth: ...}` share since
  the draw (both compare figures inside materializations, not their times).

The assets decide for themselves whether the model is replaced (`core.model_policy`): a run launched by any path
(these conditions, `scalellm run`, the UI) keeps or replaces it by the same rules.
"""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    AssetSpec,
    AutomationConditionSensorDefinition,
    DataVersion,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from scalellm_dagster.assets.conditions import source_version
from scalellm_dagster.core.audit import FAILURES_BEFORE_TOPUP
from scalellm_dagster.core.corpus import CorpusError
from scalellm_dagster.names import (
    CORPUS,
    CORPUS_SOURCE,
    DRIFT_AUDIT,
    EXPORTED_PREDICTIONS,
    LABELED_SAMPLE,
    TASK_ASSETS,
    WAREHOUSE_TAGS,
    key_path,
    prefixed,
    task_key,
)
from scalellm_dagster.resources.source import CorpusSource
from scalellm_dagster.settings import Settings
from scalellm_dagster.tasks_config import TaskSpec

AUTOMATION_SENSOR = "scalellm_automation"


def corpus_source_spec(settings: Settings, prefix: tuple[str, ...] = ()) -> AssetSpec:
    source = CorpusSource(path=settings.corpus)
    return AssetSpec(
        key_path(prefix, CORPUS_SOURCE),
        group_name=prefixed(prefix, "shared"),
        kinds={"postgres"} if source.is_postgres else {"file"},
        description=(
            f"The outside data the corpus is read from ({source.display}). Not materialized here: "
            "corpus_source_sensor reports a new version when its fingerprint changes (files: names, sizes and "
            "mtimes; a PostgreSQL table or query: row count and a hash of every row)."
        ),
    )


def sensor_status(settings: Settings) -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if settings.automation else DefaultSensorStatus.STOPPED


def instance_assets(prefix: tuple[str, ...]) -> AssetSelection:
    """The assets of the component instance with `prefix`; without one, every asset of the code location."""
    return AssetSelection.key_prefixes(list(prefix)) if prefix else AssetSelection.all()


def build_sensors(settings: Settings, tasks: list[TaskSpec], all_job, prefix: tuple[str, ...] = ()) -> list:
    return [
        AutomationConditionSensorDefinition(
            prefixed(prefix, AUTOMATION_SENSOR),
            target=instance_assets(prefix),
            default_status=sensor_status(settings),
            minimum_interval_seconds=settings.sensor_interval_seconds,
            run_tags=WAREHOUSE_TAGS,
            description=(
                "Evaluates the assets' automation conditions: new source data refreshes the corpus, its embeddings "
                "and every task's predictions, audit and export (only new or edited rows); a task's model is "
                "rebuilt when its definition changes or its retrain schedule ticks. On by default with "
                "SCALELLM_AUTOMATION=on."
            ),
        ),
        # an upstream asset's materializations say when the source changed: nothing to watch
        *([] if settings.upstream_keys else [corpus_source_sensor(settings, prefix)]),
        model_policy_sensor(settings, tasks, all_job, prefix),
    ]


def _latest_metadata(instance, key: list[str]) -> tuple[dict, str]:
    event = instance.get_latest_materialization_event(AssetKey(key))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return {k: v.value for k, v in meta.items()}, (event.run_id if event else "")


def corpus_source_sensor(settings: Settings, prefix: tuple[str, ...] = ()):
    @sensor(
        name=prefixed(prefix, "corpus_source_sensor"),
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=sensor_status(settings),
        description=(
            "Reports a new version of corpus_source when the source changed (a file added or replaced in the "
            "folder, rows added, edited or deleted in the table); launches nothing itself: the corpus and "
            "everything downstream follow by their eager automation conditions. A version the latest corpus "
            "materialization already read is not reported again."
        ),
    )
    def corpus_source_sensor(context: SensorEvaluationContext):
        source = CorpusSource(path=settings.corpus)
        try:
            version = source_version(source)
        except (CorpusError, OSError) as exc:
            return SkipReason(f"cannot read the source {source.display}: {exc}")
        read, _ = _latest_metadata(context.instance, key_path(prefix, CORPUS))
        if version in (context.cursor, read.get("source_version")):
            return SensorResult(skip_reason=SkipReason(f"{source.display}: unchanged ({version})"), cursor=version)
        return SensorResult(
            asset_events=[
                AssetMaterialization(
                    key_path(prefix, CORPUS_SOURCE),
                    description=f"{source.display} changed",
                    metadata={"source_version": version, "source": source.display},
                    tags={"dagster/data_version": DataVersion(version).value},
                )
            ],
            cursor=version,
        )

    return corpus_source_sensor


def _model_keys(settings: Settings, task: TaskSpec) -> list[AssetKey]:
    """A task's model chain and everything after it: what a replacement reruns."""
    names = (*TASK_ASSETS, DRIFT_AUDIT, *((EXPORTED_PREDICTIONS,) if settings.predictions_to else ()))
    return [AssetKey(task_key(task, name)) for name in names]


def model_policy_sensor(settings: Settings, tasks: list[TaskSpec], all_job, prefix: tuple[str, ...] = ()):
    @sensor(
        name=prefixed(prefix, "model_policy_sensor"),
        job=all_job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=sensor_status(settings),
        description=(
            f"Replaces a task's model when its drift audits have failed {FAILURES_BEFORE_TOPUP} times in a row "
            "(the sample then takes a drift top-up from the failing refreshes' rows), or when the corpus has grown "
            "by the task's retrain: {growth: ...} share since its sample was drawn. One run per failing streak, "
            "one per draw. A sensor because both rules compare figures inside materializations, which no "
            "automation condition reads."
        ),
    )
    def model_policy_sensor(context: SensorEvaluationContext):
        corpus, _ = _latest_metadata(context.instance, key_path(prefix, CORPUS))
        requests, waiting = [], []
        for task in tasks:
            reason, key = _replacement_due(context.instance, task, corpus.get("dagster/row_count"))
            if reason is None:
                waiting.append(f"{task.name}: {key}")
                continue
            requests.append(
                RunRequest(
                    run_key=key,
                    asset_selection=_model_keys(settings, task),
                    tags={**WAREHOUSE_TAGS, "scalellm/task": task.name, "scalellm/model_policy": reason},
                )
            )
        if not requests:
            return SkipReason("; ".join(waiting))
        return SensorResult(run_requests=requests)

    return model_policy_sensor


def _replacement_due(instance, task: TaskSpec, corpus_rows) -> tuple[str | None, str]:
    """(why the task's model is due for replacement, the run key that requests it once) or (None, why not)."""
    audit, _ = _latest_metadata(instance, task_key(task, DRIFT_AUDIT))
    if audit.get("drift_topup_due"):
        last_failed = audit["last_failed_audit_run_id"]
        return "drift", f"{task.name}-drift-topup-{last_failed}"
    if task.retrain_growth is None:
        return None, "no drift top-up due; no growth policy"
    sample, run_id = _latest_metadata(instance, task_key(task, LABELED_SAMPLE))
    drawn, drawn_by = sample.get("corpus_rows_at_draw"), sample.get("drawn_by_run", run_id)
    if not drawn or corpus_rows is None:
        return None, "no draw or corpus materialized yet"
    grown = corpus_rows / drawn - 1
    if grown < task.retrain_growth:
        return None, f"corpus {grown:+.1%} since the draw (retrain at +{task.retrain_growth:.0%})"
    return "growth", f"{task.name}-growth-{drawn_by}"
