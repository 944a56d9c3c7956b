"""A stand-in for llama.cpp inside the local model's worker process (`local_worker.LOADER`): it answers the
labelling prompt like a model (each row labelled by the first task label its text names, else the first label), and
does to its own process what native code can: a text containing SEGV-ME sends it SIGSEGV, KILL-ME SIGKILL, SLOW
makes it take 5 s. With FAKE_LLAMA_CRASH_ONCE set to a folder, each crash happens once (a marker file remembers
it), so a rerun is answered."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

LOADER = "tests.fake_llama:load"


class FakeLlama:
    metadata = {"tokenizer.chat_template": "fake"}

    def create_chat_completion(self, messages, temperature, max_tokens, response_format=None):
        rows = [json.loads(line) for line in messages[-1]["content"].splitlines()[1:] if line.startswith("{")]
        items = (response_format or {}).get("schema", {}).get("properties", {}).get("answers", {}).get("prefixItems")
        labels = items[0]["properties"]["label"]["enum"] if items else ["cards", "transfers"]
        for row in rows:
            for marker, action in (("SEGV-ME", signal.SIGSEGV), ("KILL-ME", signal.SIGKILL)):
                if marker in row["text"] and _first_time(marker + row["id"]):
                    os.kill(os.getpid(), action)
            if "SLOW" in row["text"]:
                time.sleep(5)
        answers = [{"id": r["id"], "label": next((lb for lb in labels if lb in r["text"]), labels[0])} for r in rows]
        return {
            "id": "fake",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": json.dumps({"answers": answers})},
                }
            ],
            "usage": {"prompt_tokens": 10 * len(rows), "completion_tokens": 5 * len(rows), "total_tokens": 0},
        }


def _first_time(key: str) -> bool:
    folder = os.environ.get("FAKE_LLAMA_CRASH_ONCE")
    if not folder:
        return True
    marker = Path(folder) / key.replace("/", "_")
    if marker.exists():
        return False
    marker.touch()
    return True


def load(path: str, threads: int, context: int) -> FakeLlama:
    if Path(path).read_bytes()[:4] == b"BAD!":
        from scalellm_dagster.teachers.local_worker import LocalModelError

        raise LocalModelError(f"{path}: llama.cpp cannot load it as a GGUF model (fake)")
    return FakeLlama()


def load_crashing(path: str, threads: int, context: int):
    """A model whose native code crashes while loading, as a wheel built for another CPU does."""
    os.kill(os.getpid(), signal.SIGSEGV)
