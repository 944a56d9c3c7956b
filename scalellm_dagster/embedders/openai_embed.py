"""Embeddings from any OpenAI-compatible `/v1/embeddings` endpoint, paced to its rate limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai

from scalellm_dagster.embedders.protocol import Log, Texts, as_text_list, no_log
from scalellm_dagster.rate_limit import RateLimiter, input_tokens, send, shared_limiter


class OpenAIEmbedder:
    """Every request passes the endpoint's `RateLimiter` (scope "embeddings": requests and tokens per minute,
    configured or learned from its headers; 429s waited out by every send), so embedding a large corpus at a paid
    endpoint neither storms it nor fails a step after the client's few retries. 5xx, timeouts and dropped
    connections are retried `max_retries` times (the client's own retries are off: they would bypass the limiter).
    The limiter is the process's one for this endpoint's embeddings (`shared_limiter`), shared by every embedder
    built for it."""

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        batch_size: int = 256,
        concurrency: int = 4,
        endpoint: str | None = None,
        requests_per_minute: float = 0,
        *,
        tokens_per_minute: float = 0,
        pace_dir: str | None = None,
    ):
        self.model = model
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.max_retries = int(getattr(client, "max_retries", 2))
        self.sender = client.with_options(max_retries=0)
        self.endpoint = endpoint or str(getattr(client, "base_url", "the endpoint"))
        self.limiter: RateLimiter = shared_limiter(
            self.endpoint, requests_per_minute, tokens_per_minute, concurrency, pace_dir, scope="embeddings"
        )
        self.dim: int | None = None

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    fitted = True  # nothing to fit: `embed` and `fit_embed` are the same
    threads = 1  # requests run `concurrency` at a time inside `embed`

    def fit(self, texts: Texts, log: Log = no_log) -> OpenAIEmbedder:
        return self

    def embed(self, texts: Texts, log: Log = no_log) -> np.ndarray:
        return self.fit_embed(texts, log)

    def fit_embed(self, texts: Texts, log: Log = no_log) -> np.ndarray:
        texts = as_text_list(texts)
        batches = [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        out: list[np.ndarray] = []
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for i, vectors in enumerate(pool.map(self._embed_batch, batches), start=1):
                out.append(vectors)
                if i % 10 == 0 or i == len(batches):
                    log(f"embedded {min(i * self.batch_size, len(texts)):,}/{len(texts):,} rows" + self._pacing())
        matrix = np.concatenate(out) if out else np.zeros((0, self.dim or 0), np.float32)
        # OpenAI's vectors are unit length already; others' may not be, and the checks expect unit norms.
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)

    def _pacing(self) -> str:
        limiter = self.limiter
        if not limiter.stats.rate_limited:
            return ""
        return f" ({limiter.describe()}; {limiter.stats.rate_limited} rate-limited replies waited out)"

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        response = send(
            self.limiter, lambda: _create(self.sender, self.model, batch), input_tokens(batch), self.max_retries
        )
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(batch):
            raise RuntimeError(f"embeddings endpoint returned {len(data)} vectors for {len(batch)} inputs")
        vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        if self.dim is None:
            self.dim = vectors.shape[1]
        elif vectors.shape[1] != self.dim:
            raise RuntimeError(f"embeddings endpoint changed dimension mid-run: {vectors.shape[1]} != {self.dim}")
        return vectors


def _create(client: openai.OpenAI, model: str, batch: list[str]):
    """(the reply, its headers): the headers carry the endpoint's rate limits."""
    reply = client.embeddings.with_raw_response.create(model=model, input=batch)
    return reply.parse(), reply.headers
