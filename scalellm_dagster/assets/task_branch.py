"""What every asset of a task's branch declares: the branch (key prefix, group, owner, code version) and the
`task_asset` decorator the asset modules use."""

from dagster import asset

from scalellm_dagster.names import task_fingerprint
from scalellm_dagster.tasks_config import TaskSpec


def branch_of(task: TaskSpec) -> dict:
    # The code version is the task's fingerprint: the UI marks a task's assets as changed when its definition does.
    return {
        "key_prefix": [task.name],
        "group_name": task.name,
        "owners": ["team:scalellm"],
        "code_version": task_fingerprint(task),
    }


def task_asset(
    task: TaskSpec,
    name: str,
    deps: list,
    layer: str,
    description: str,
    kinds: set[str] = frozenset({"duckdb", "sklearn"}),
    tags: dict | None = None,
):
    """`@asset` for one of `task`'s assets, tagged with the task and the layer of the flow it belongs to."""
    return asset(
        name=name,
        deps=deps,
        kinds=set(kinds),
        tags={"task": task.name, "layer": layer, **(tags or {})},
        description=description,
        **branch_of(task),
    )
