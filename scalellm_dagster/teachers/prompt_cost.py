"""The sizes of the project's real prompt for a task, measured over sample texts: what the dry-run estimate
(`core.cost_estimate`) prices."""

from __future__ import annotations

import numpy as np

from scalellm_dagster.core.cost_estimate import PromptSizes
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.prompts import system_prompt, user_prompt
from scalellm_dagster.teachers.structured_output import answer_token_bound


def joint_prompt_sizes(tasks: list[TaskSpec], texts: list[str]) -> PromptSizes:
    """The joint prompt's sizes (`teachers.multi_task`): every task's instructions once, each row once, one answer
    field per task."""
    from scalellm_dagster.teachers.multi_task import joint_system_prompt, joint_token_bound

    singles = [prompt_sizes(t, texts) for t in tasks]
    return PromptSizes(
        per_request_chars=len(joint_system_prompt(tasks)),
        per_row_chars=singles[0].per_row_chars,
        answer_chars_per_row=sum(s.answer_chars_per_row for s in singles) - 16 * (len(tasks) - 1),
        answer_bound_tokens_per_row=joint_token_bound(["123456"] * 10, tasks) / 10,
    )


def prompt_sizes(task: TaskSpec, texts: list[str]) -> PromptSizes:
    sample = texts[: max(1, min(len(texts), 200))]
    return PromptSizes(
        per_request_chars=len(system_prompt(task)),
        per_row_chars=float(np.mean([len(user_prompt([("123456", t)])) for t in sample])),
        answer_chars_per_row=float(np.mean([len(lab) for lab in task.labels]) + 24),
        answer_bound_tokens_per_row=answer_token_bound(["123456"] * 10, task.label_names) / 10,
    )
