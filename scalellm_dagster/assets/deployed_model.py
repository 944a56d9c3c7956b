"""Asking for a task's deployed model to be replaced: the run tag `scalellm/retrain` (a task's draws and kept students
are in the warehouse, read and written by `resources.TaskStore`)."""

RETRAIN_TAG = "scalellm/retrain"  # on a run: "all", or task names separated by commas, whose models it replaces


def retrain_requested(tags: dict, task: str) -> bool:
    asked = (tags or {}).get(RETRAIN_TAG, "")
    return asked.strip() == "all" or task in {name.strip() for name in asked.split(",")}
