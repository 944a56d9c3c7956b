"""An LLM teacher over any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, LM Studio)."""

from __future__ import annotations

import threading
import time

import openai

from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.base import BatchResult
from scalellm_dagster.teachers.prompts import answer_schema, parse_answers, prompt_version, system_prompt, user_prompt


class OpenAIChatTeacher:
    """Asks for a JSON answer whose label field is an enum of the task's labels.

    Servers that reject `response_format=json_schema` get the same prompt without it (once noticed, for the rest
    of the run) and the reply is parsed leniently. Retries with backoff on 429/5xx/timeouts, honouring
    `Retry-After`, are the `openai` client's own (`max_retries`).
    """

    provider = "openai"

    def __init__(
        self,
        task: TaskSpec,
        client: openai.OpenAI,
        model: str,
        price_in_per_mtok: float = 0.0,
        price_out_per_mtok: float = 0.0,
        use_json_schema: bool = True,
    ):
        self.task = task
        self.client = client
        self.model = model
        self._prices = (price_in_per_mtok, price_out_per_mtok)
        self._system = system_prompt(task)
        self._schema = answer_schema(task)
        self._use_schema = use_json_schema
        self._lock = threading.Lock()

    @property
    def prompt_version(self) -> str:
        return prompt_version(self.task)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self._prices[0] + completion_tokens * self._prices[1]) / 1e6

    def label_batch(self, rows: list[tuple[str, str]]) -> BatchResult:
        messages = [
            {"role": "system", "content": self._system},
            {"role": "user", "content": user_prompt(rows)},
        ]
        start = time.perf_counter()
        notes = []
        if self._use_schema:
            try:
                response = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    temperature=0,
                    response_format={"type": "json_schema", "json_schema": self._schema},
                )
            except openai.BadRequestError as exc:
                if "response_format" not in str(exc) and "json_schema" not in str(exc):
                    raise
                with self._lock:
                    self._use_schema = False
                notes.append("server rejected json_schema response_format; using the plain-JSON prompt")
                response = None
        else:
            response = None
        if response is None:
            response = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0)
        content = response.choices[0].message.content if response.choices else ""
        usage = response.usage
        return BatchResult(
            answers=parse_answers(content, [k for k, _ in rows], self.task.label_names),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            seconds=time.perf_counter() - start,
            notes=notes,
        )
