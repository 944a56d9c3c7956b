"""The local model in a child process of its own, so that a crash in native code (llama.cpp) fails one teacher
request instead of the run.

One worker process per model file and settings, shared by every teacher of this process; it loads the model once
and answers one request at a time over a pipe. When it dies (a segfault, an out-of-memory kill), the request in
flight fails with the cause (`LocalModelDied`: "... died (signal 11: SIGSEGV) ...") and is handled like any other
failed request: the answers already received stay cached and a rerun asks only the rest. The next request starts a
fresh worker; a worker that dies twice in a row with no answer between stops the run at once.
"""

from __future__ import annotations

import importlib
import multiprocessing
import signal
import threading
import time
from pathlib import Path

from scalellm_dagster.teachers.base import TeacherFatalError

# "module:function" that loads a model in the worker: (path, threads, context) -> an object with
# `create_chat_completion(**request)` and `metadata`. Tests point it at a fake model that can crash on demand.
LOADER = "scalellm_dagster.teachers.local_worker:load_llama"
LOAD_TIMEOUT_SECONDS = 300.0


class LocalModelError(RuntimeError):
    """The local model cannot be used; the message says why and what to do."""


class LocalModelDied(RuntimeError):
    """The model's process died while answering a request (its rows stay unanswered and are asked again)."""


def load_llama(path: str, threads: int, context: int):
    from llama_cpp import Llama

    try:
        llama = Llama(model_path=path, n_threads=threads, n_ctx=context, verbose=False, seed=0)
    except (ValueError, RuntimeError) as exc:
        raise LocalModelError(f"{path}: llama.cpp cannot load it as a GGUF model ({exc})") from None
    if not llama.metadata.get("tokenizer.chat_template"):
        raise LocalModelError(
            f"{path}: the model has no chat template, so it is probably not instruct-tuned; use an instruct (chat) GGUF"
        )
    return llama


def _serve(conn, loader: str, path: str, threads: int, context: int) -> None:
    """The worker's loop: load, say ready, then answer requests until the pipe closes."""
    module, _, name = loader.partition(":")
    try:
        model = getattr(importlib.import_module(module), name)(path, threads, context)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it there
        conn.send(("error", str(exc) if isinstance(exc, LocalModelError) else f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the parent is gone
            return
        try:
            conn.send(("ok", model.create_chat_completion(**request)))
        except Exception as exc:  # noqa: BLE001 - a failed request, reported as such
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "did not answer"
    if code < 0:
        try:
            return f"died (signal {-code}: {signal.Signals(-code).name})"
        except ValueError:
            return f"died (signal {-code})"
    return f"exited with status {code}"


class ModelWorker:
    """A model loaded in its own process; `request` sends one chat completion and waits for its answer."""

    def __init__(self, path: str, threads: int = 1, context: int = 2048, timeout_seconds: float = 600.0):
        self.path, self.threads, self.context, self.timeout_seconds = path, threads, context, timeout_seconds
        self.process = None
        self._conn = None
        self._lock = threading.Lock()  # one request at a time: a llama.cpp context is not thread-safe
        self.deaths_in_a_row = 0

    def start(self) -> None:
        """Load the model now (a file llama.cpp cannot load fails here, before any request)."""
        with self._lock:
            if self.process is None or not self.process.is_alive():
                self._start()

    def request(self, **request) -> dict:
        with self._lock:
            if self.process is None or not self.process.is_alive():
                self._start()
            self._conn.send(request)
            status, payload = self._receive(self.timeout_seconds, "while answering a request")
            self.deaths_in_a_row = 0
            if status == "error":
                raise RuntimeError(f"the local model failed a request: {payload}")
            return payload

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork: the parent holds threads and DuckDB connections
        parent, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve,
            args=(child, LOADER, self.path, self.threads, self.context),
            name=f"scalellm-local-model:{Path(self.path).name}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self._conn = parent
        status, payload = self._receive(LOAD_TIMEOUT_SECONDS, "while loading the model")
        if status == "error":
            self.process.join(5)
            raise LocalModelError(payload)

    def _receive(self, timeout: float, doing: str):
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._conn.poll(0.05):
                    return self._conn.recv()
            except (EOFError, OSError):
                pass  # the pipe closed: the process is dying; its exit code says how
            if not self.process.is_alive() or time.monotonic() > deadline:
                return self._died(doing)

    def _died(self, doing: str):
        hung = self.process.is_alive()
        if hung:  # past the deadline: a hung model is ended
            self.process.kill()
        self.process.join(5)
        self.deaths_in_a_row += 1
        how = (
            f"gave no answer within {self.timeout_seconds:.0f}s and was ended"
            if hung
            else describe_exit(self.process.exitcode)
        )
        message = f"the local model process (pid {self.process.pid}, {Path(self.path).name}) {how} {doing}"
        self.process, self._conn = None, None
        if self.deaths_in_a_row >= 2:
            raise TeacherFatalError(
                f"{message}, the second time in a row: the model cannot run here. If this is llama.cpp built for "
                "another CPU, rebuild it portably (`make llm`); otherwise check the model file and memory"
            )
        raise LocalModelDied(
            f"{message}; its rows are asked again next run, and a fresh process takes the next request"
        )

    def close(self) -> None:
        with self._lock:
            if self.process is not None and self.process.is_alive():
                self._conn.close()
                self.process.join(5)
                if self.process.is_alive():
                    self.process.kill()
            self.process, self._conn = None, None
