"""What every asset of a task's branch declares: the branch (key prefix, group, owner, code version) and the
`task_asset` decorator the asset modules use."""

from dagster import AssetsDefinition, AutomationCondition, asset

from scalellm_dagster.assets.conditions import FOLLOW_THE_DATA
from scalellm_dagster.assets.heartbeat_step import with_heartbeat
from scalellm_dagster.assets.resource_keys import bind_resources
from scalellm_dagster.names import prefixed, task_fingerprint, task_key
from scalellm_dagster.tasks_config import TaskSpec


def branch_of(task: TaskSpec) -> dict:
    # The code version is the task's fingerprint: the UI marks a task's assets as changed when its definition does.
    return {
        "key_prefix": task_key(task, "")[:-1],
        "group_name": prefixed(task.key_prefix, task.name),
        "owners": ["team:scalellm"],
        "code_version": task_fingerprint(task),
    }


def pool_of(deps: list) -> str | None:
    """The concurrency pool of the warehouse an asset's upstream assets write: an asset that reads them writes the
    same file (`names.warehouse_pool`), so it takes turns in the same pool."""
    return next((d.op.pool for d in deps if isinstance(d, AssetsDefinition) and d.op.pool), None)


def task_asset(
    task: TaskSpec,
    name: str,
    deps: list,
    layer: str,
    description: str,
    kinds: set[str] = frozenset({"duckdb", "sklearn"}),
    *,
    tags: dict | None = None,
    automation_condition: AutomationCondition = FOLLOW_THE_DATA,
):
    """`@asset` for one of `task`'s assets, tagged with the task and the layer of the flow it belongs to; it follows
    new data unless told otherwise (the model chain: `conditions.model_condition`)."""
    decorate = asset(
        name=name,
        deps=deps,
        kinds=set(kinds),
        tags={"task": task.name, "layer": layer, **(tags or {})},
        description=description,
        automation_condition=automation_condition,
        pool=pool_of(deps),
        **branch_of(task),
    )
    return lambda fn: decorate(bind_resources(with_heartbeat(fn), task.key_prefix))
