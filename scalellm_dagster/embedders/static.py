"""Offline default: static embeddings distilled from all-MiniLM-L6-v2 with model2vec.

One vector per vocabulary token, shipped with the package (scalellm_dagster/embedders/static_minilm/,
rebuilt by scripts/distill_static_embedder.py). A text's vector is the average of its tokens' rows: no torch, no
fitting, and a row's vector never depends on the rest of the corpus, so refreshes and cluster parts embed
independently. The average is pooled word by word (`word_pooling`): model2vec's vectors, each distinct word
tokenised once, chunks pooled on every core.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from scalellm_dagster.embedders.protocol import FitFreeEmbedder, Log
from scalellm_dagster.embedders.word_pooling import WordPooler

WEIGHTS = Path(__file__).resolve().parent / "static_minilm"


class StaticEmbedder(FitFreeEmbedder):
    dim = 256

    def __init__(self, path: str | Path = WEIGHTS, chunk_rows: int = 50_000, threads: int | None = None):
        self.path = Path(path)
        self.chunk_rows = chunk_rows  # memory and progress: chunks are pooled (and logged) one at a time a thread
        # Cluster workers are told one thread (OMP_NUM_THREADS=1): the cores are the cluster's to share out.
        self.threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
        self._model = None
        self._pooler = None

    def __getstate__(self):  # sent to cluster workers without the loaded model, which each loads once
        return {**self.__dict__, "_model": None, "_pooler": None}

    @cached_property
    def name(self) -> str:
        """The vectors' version: changes when the weights do, so predictions made on old vectors are not reused."""
        digest = hashlib.sha256((self.path / "model.safetensors").read_bytes()).hexdigest()[:8]
        return f"static-minilm{self.dim}-{digest}"

    def load(self):
        if self._model is None:
            from model2vec import StaticModel

            if not (self.path / "model.safetensors").is_file():
                raise FileNotFoundError(
                    f"static embedder weights not found in {self.path}: reinstall the package, "
                    "or rebuild them with scripts/distill_static_embedder.py"
                )
            model = StaticModel.from_pretrained(self.path)
            # int8 on disk keeps the package small; the pooling's sparse products want float32 rows.
            model.embedding = np.asarray(model.embedding, dtype=np.float32)
            if model.dim != self.dim:
                raise RuntimeError(
                    f"the static embedder in {self.path} gives {model.dim}-d vectors; expected {self.dim}"
                )
            # The distiller zeroes the unknown token's row, so texts of unknown tokens only fall back to the
            # vocabulary's mean direction: one shared vector that says "nothing known here".
            self._fallback = _unit(model.embedding.mean(axis=0))
            self._model = model
            self._pooler = WordPooler(model) if WordPooler.supports(model) else None
        return self._model

    def _encode(self, chunk: pa.Array) -> np.ndarray:
        if self._pooler is not None:
            return self._pooler.pool(chunk)
        # model2vec's own process pool would copy the model into each worker.
        return self.load().encode(chunk.to_pylist(), use_multiprocessing=False, batch_size=len(chunk) or 1)

    def _finish(self, out: np.ndarray, log: Log) -> np.ndarray:
        # A text with no known token (only emoji or an unknown script) averages nothing: it gets the fallback
        # vector, a valid unit vector every such text shares, rather than zeros that break cosine models.
        empty = np.einsum("ij,ij->i", out, out) < 0.25
        if empty.any():
            out[empty] = self._fallback
            log(f"{int(empty.sum()):,} texts had no token in the vocabulary; they share one fallback vector")
        return out


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)
