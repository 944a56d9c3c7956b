"""One place that builds `openai.OpenAI` clients, so every endpoint gets the same timeout and retry policy."""

from __future__ import annotations

import openai


def make_client(base_url: str | None, api_key: str | None, timeout_seconds: float, max_retries: int) -> openai.OpenAI:
    # Local servers (vLLM, Ollama) accept any key, but the client refuses an empty one.
    return openai.OpenAI(
        base_url=base_url or None,
        api_key=api_key or "no-key-set",
        timeout=timeout_seconds,
        max_retries=max_retries,
    )
