"""What every embedder without a fit shares: no-op fitting, and embedding chunk by chunk with progress."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class FitFreeEmbedder:
    """A row's vector depends on its text alone: refreshes and shards embed independently. Subclasses set `dim`,
    `chunk_rows`, `load()` (the model, loaded once) and `_encode(chunk) -> (len(chunk), dim) float32`."""

    fitted = True
    dim: int
    chunk_rows: int

    def load(self):
        raise NotImplementedError

    def _encode(self, chunk: list[str]) -> np.ndarray:
        raise NotImplementedError

    def fit(self, texts: Sequence[str], log: Callable[[str], None] = lambda _m: None):
        return self

    def fit_embed(self, texts: Sequence[str], log: Callable[[str], None] = lambda _m: None) -> np.ndarray:
        return self.embed(texts, log)

    def embed(self, texts: Sequence[str], log: Callable[[str], None] = lambda _m: None) -> np.ndarray:
        self.load()  # a missing model fails here, before any work, even for no texts
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.chunk_rows):
            chunk = list(texts[start : start + self.chunk_rows])
            out[start : start + len(chunk)] = self._encode(chunk)
            if len(texts) > self.chunk_rows:
                log(f"embedded {start + len(chunk):,}/{len(texts):,} rows")
        return out
