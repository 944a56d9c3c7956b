"""Several tasks' questions about the same rows in one request: one prompt, one answer per task per row.

When tasks share rows in their samples, asking each task separately sends each row's text once per task, plus each
task's instructions in a request of its own. A joint request sends the rows once, with every task's instructions and
labels, and asks for `{"id": ..., "<task>": "<label>", ...}` per row. The answers are kept per task under the task's
own cache key (provider, model, the task's prompt version, text hash), exactly as a single-task answer: a later
single-task run reuses them. What a joint prompt costs in accuracy is measured, not assumed (BENCHMARKS.md, issue
#38: per-task validity and agreement with separate requests, on the demo, with the real local model).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from scalellm_dagster.core.cost_estimate import CHARS_PER_TOKEN
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.base import Answer, BatchResult
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.teachers.prompts import LabelMatcher, answers_schema, user_prompt
from scalellm_dagster.teachers.simulated import SimulatedTeacher

_JSON_OBJECT_START = "{"


def joint_system_prompt(tasks: list[TaskSpec]) -> str:
    lines = [
        "You are a careful data labeller. Answer every question below about every row.",
    ]
    for task in tasks:
        lines += ["", f'Question "{task.name}": {task.instruction}', "Allowed labels (exactly as written):"]
        lines += [f"- {name}: {desc}" for name, desc in task.labels.items()]
    fields = ", ".join(f'"{t.name}": "<label>"' for t in tasks)
    lines += [
        "",
        f'Reply with JSON only: {{"answers": [{{"id": "<row id>", {fields}}}, ...]}}, one entry for every row, '
        "with each row's id exactly as given and one allowed label per question.",
    ]
    return "\n".join(lines)


def joint_schema(tasks: list[TaskSpec], keys: list[str] | None = None) -> dict:
    return answers_schema({t.name: t.label_names for t in tasks}, keys)


def joint_token_bound(keys: list[str], tasks: list[TaskSpec]) -> int:
    """As `structured_output.answer_token_bound`, with one field per task in each item."""
    item = {"id": "", **{t.name: "x" * max((len(label) for label in t.label_names), default=8) for t in tasks}}
    chars = len('{"answers": []}') + sum(len(json.dumps({**item, "id": k})) + 2 for k in keys)
    return chars // 2 + 32


def parse_joint(content: str | None, keys: list[str], tasks: list[TaskSpec]) -> dict[str, dict[str, Answer]]:
    """Per task, the rows `content` answers that question for (a row the reply leaves out, or a question it
    leaves unanswered, is no answer: that task asks it again). Labels are matched as `parse_answers` does."""
    out: dict[str, dict[str, Answer]] = {t.name: {} for t in tasks}
    items = _items(content or "")
    wanted = set(keys)
    matchers = {t.name: LabelMatcher(t.label_names) for t in tasks}
    for item in items:
        key = str(item.get("id", "")).strip() if isinstance(item, dict) else ""
        key = key if key in wanted else next((k for k in keys if k.strip() == key), key)
        if key not in wanted:
            continue
        for task in tasks:
            label = item.get(task.name)
            if isinstance(label, str) and key not in out[task.name]:
                out[task.name][key] = Answer(label=matchers[task.name](label), raw=label)
    return out


def _items(content: str) -> list:
    start, end = content.find(_JSON_OBJECT_START), content.rfind("}")
    if start < 0 or end <= start:
        return []
    try:
        doc = json.loads(content[start : end + 1])
    except json.JSONDecodeError:
        return []
    items = doc.get("answers") if isinstance(doc, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


@dataclass
class JointResult(BatchResult):
    """A joint request's outcome: `by_task` holds each task's answers; `answers` the rows every task answered."""

    by_task: dict[str, dict[str, Answer]] = field(default_factory=dict)

    @classmethod
    def of(cls, tasks: list[TaskSpec], keys: list[str], by_task: dict[str, dict[str, Answer]], **measured):
        every = set.intersection(*(set(a) for a in by_task.values()))
        first = by_task[tasks[0].name]
        return cls(answers={k: first[k] for k in keys if k in every}, by_task=by_task, **measured)


class JointChatTeacher(OpenAIChatTeacher):
    """An OpenAI-compatible (or local llama.cpp) teacher asking every task's question at once. It shares the single
    teacher's client, limiter, retries and structured-output probe; only the prompt, schema and parser differ."""

    def __init__(self, tasks: list[TaskSpec], single: OpenAIChatTeacher):
        super().__init__(
            tasks[0],
            single.client,
            single.model,
            *single._prices,
            forms=single._forms,
            endpoint=single.endpoint,
            limiter=single.limiter,
        )
        self.provider = single.provider  # "local" for the in-process llama.cpp model
        self._form = single._form  # the structured-output form the endpoint already accepted, if probed
        self.tasks = list(tasks)
        self._system = joint_system_prompt(self.tasks)

    def _max_tokens(self, keys: list[str]) -> int:
        return joint_token_bound(keys, self.tasks)

    def _schema(self, keys: list[str]) -> dict:
        return joint_schema(self.tasks, keys)

    def _result(self, content: str | None, keys: list[str], **measured) -> JointResult:
        return JointResult.of(self.tasks, keys, parse_joint(content, keys, self.tasks), **measured)


def joint_teacher(tasks: list[TaskSpec], singles: dict[str, object]):
    """The joint teacher over each task's own (`singles`: task name -> teacher of one kind)."""
    first = singles[tasks[0].name]
    if isinstance(first, OpenAIChatTeacher):
        return JointChatTeacher(tasks, first)
    if isinstance(first, SimulatedTeacher):
        return SimulatedJointTeacher(tasks, singles)
    raise ValueError(f"teacher {first.provider}: no joint form (shared requests need an LLM or a simulation)")


class SimulatedJointTeacher:
    """The simulations answering several tasks in one request: each task's answers are its own simulation's (a
    simulation knows nothing of prompts), and the tokens are estimated for the joint prompt (~4 characters a
    token), so the ledger shows what a real model would bill for it. A simulation, named so in the ledger."""

    def __init__(self, tasks: list[TaskSpec], singles: dict[str, object]):
        self.tasks, self.singles = list(tasks), singles
        first = singles[self.tasks[0].name]
        self.provider, self.model = first.provider, first.model
        self._system = joint_system_prompt(self.tasks)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return self.singles[self.tasks[0].name].cost_usd(prompt_tokens, completion_tokens)

    def label_batch(self, rows: list[tuple[str, str]]) -> JointResult:
        start = time.perf_counter()
        by_task = {t.name: self.singles[t.name].label_batch(rows).answers for t in self.tasks}
        keys = [k for k, _ in rows]
        prompt_chars = len(self._system) + len(user_prompt(rows))
        item = {"id": "", **{t.name: "" for t in self.tasks}}
        completion_chars = sum(
            len(json.dumps({**item, "id": k, **{t: by_task[t][k].raw for t in by_task if k in by_task[t]}}))
            for k in keys
        )
        return JointResult.of(
            self.tasks,
            keys,
            by_task,
            prompt_tokens=prompt_chars // CHARS_PER_TOKEN,
            completion_tokens=completion_chars // CHARS_PER_TOKEN,
            seconds=time.perf_counter() - start,
            tokens_estimated=True,
        )
