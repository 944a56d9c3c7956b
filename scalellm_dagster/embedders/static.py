"""Offline default: static embeddings distilled from all-MiniLM-L6-v2 with model2vec.

One vector per vocabulary token, shipped with the package (scalellm_dagster/embedders/static_minilm/, 7.6 MB,
rebuilt by scripts/distill_static_embedder.py). Embedding a text is tokenising it (Rust, both cores) and averaging
its tokens' rows: no torch, no fitting, and a row's vector never depends on the rest of the corpus, so refreshes
and shards embed independently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from scalellm_dagster.embedders.fit_free import FitFreeEmbedder

WEIGHTS = Path(__file__).resolve().parent / "static_minilm"


class StaticEmbedder(FitFreeEmbedder):
    dim = 256

    def __init__(self, path: str | Path = WEIGHTS, chunk_rows: int = 50_000):
        self.path = Path(path)
        self.chunk_rows = chunk_rows  # progress is logged per chunk; the tokenizer batches within it
        self._model = None

    @cached_property
    def name(self) -> str:
        """The vectors' version: changes when the weights do, so predictions made on old vectors are not reused."""
        digest = hashlib.sha256((self.path / "model.safetensors").read_bytes()).hexdigest()[:8]
        return f"static-minilm{self.dim}-{digest}"

    def load(self):
        if self._model is None:
            from model2vec import StaticModel

            if not (self.path / "model.safetensors").is_file():
                raise FileNotFoundError(f"static embedder weights not found in {self.path}: reinstall the package, "
                                        "or rebuild them with scripts/distill_static_embedder.py")
            model = StaticModel.from_pretrained(self.path)
            # int8 on disk keeps the package small; float32 in memory makes averaging 2-3x faster than int8 or
            # float16 rows (numpy upcasts those row by row).
            model.embedding = np.asarray(model.embedding, dtype=np.float32)
            if model.dim != self.dim:
                raise RuntimeError(f"the static embedder in {self.path} gives {model.dim}-d vectors; "
                                   f"expected {self.dim}")
            # The distiller zeroes the unknown token's row, so texts of unknown tokens only fall back to the
            # vocabulary's mean direction: one shared vector that says "nothing known here".
            self._fallback = _unit(model.embedding.mean(axis=0))
            self._model = model
        return self._model

    def _encode(self, chunk: list[str]) -> np.ndarray:
        # model2vec's own process pool would copy the model into each worker; the tokenizer already uses every
        # core, and averaging is a few percent of the time.
        return self.load().encode(chunk, use_multiprocessing=False, batch_size=len(chunk) or 1)

    def embed(self, texts: Sequence[str], log: Callable[[str], None] = lambda _m: None) -> np.ndarray:
        out = super().embed(texts, log)
        # A text with no known token (only emoji or an unknown script) averages nothing: it gets the fallback
        # vector, a valid unit vector every such text shares, rather than zeros that break cosine models.
        empty = np.einsum("ij,ij->i", out, out) < 0.25
        if empty.any():
            out[empty] = self._fallback
            log(f"{int(empty.sum()):,} texts had no token in the vocabulary; they share one fallback vector")
        return out


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)
