"""Embeddings from any OpenAI-compatible `/v1/embeddings` endpoint."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai

from scalellm_dagster.embedders.protocol import Log, Texts, as_text_list, no_log


class OpenAIEmbedder:
    def __init__(self, client: openai.OpenAI, model: str, batch_size: int = 256, concurrency: int = 4):
        self.client = client
        self.model = model
        self.batch_size = batch_size
        self.concurrency = concurrency
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
                    log(f"embedded {min(i * self.batch_size, len(texts)):,}/{len(texts):,} rows")
        matrix = np.concatenate(out) if out else np.zeros((0, self.dim or 0), np.float32)
        # OpenAI's vectors are unit length already; others' may not be, and the checks expect unit norms.
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        response = self.client.embeddings.create(model=self.model, input=batch)
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(batch):
            raise RuntimeError(f"embeddings endpoint returned {len(data)} vectors for {len(batch)} inputs")
        vectors = np.asarray([d.embedding for d in data], dtype=np.float32)
        if self.dim is None:
            self.dim = vectors.shape[1]
        elif vectors.shape[1] != self.dim:
            raise RuntimeError(f"embeddings endpoint changed dimension mid-run: {vectors.shape[1]} != {self.dim}")
        return vectors
