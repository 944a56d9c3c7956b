"""The sizes of the project's real prompt for a task, measured over sample texts: what the dry-run estimate
(`core.cost_estimate`) prices."""

from __future__ import annotations

import numpy as np

from scalellm_dagster.core.cost_estimate import PromptSizes
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.prompts import system_prompt, user_prompt


def prompt_sizes(task: TaskSpec, texts: list[str]) -> PromptSizes:
    sample = texts[: max(1, min(len(texts), 200))]
    return PromptSizes(
        per_request_chars=len(system_prompt(task)),
        per_row_chars=float(np.mean([len(user_prompt([("123456", t)])) for t in sample])),
        answer_chars_per_row=float(np.mean([len(lab) for lab in task.labels]) + 24),
    )
