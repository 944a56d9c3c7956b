"""What every embedder is: the `Embedder` protocol, the text column forms it accepts, and the chunk loop the
embedders without a fit share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# A text column as callers hold it: a list, a pandas string Series or an Arrow string array.
Texts = Sequence[str] | pd.Series | pa.Array | pa.ChunkedArray
Log = Callable[[str], None]


def no_log(_message: str) -> None:
    pass


@runtime_checkable
class Embedder(Protocol):
    """Texts -> L2-normalised float32 vectors, one row per text.

    `name` versions the vectors (stored with them: vectors of another name are never mixed in); `dim` is their
    size (None until a remote model has answered); `fitted` is False only for an embedder that must see the corpus
    first (LSA); `threads` is how many chunks the caller may have it embed at once in one process."""

    name: str
    dim: int | None
    fitted: bool
    threads: int

    def fit(self, texts: Texts, log: Log = no_log) -> Embedder: ...

    def embed(self, texts: Texts, log: Log = no_log) -> np.ndarray: ...

    def fit_embed(self, texts: Texts, log: Log = no_log) -> np.ndarray: ...


def as_string_array(texts: Texts) -> pa.Array:
    """`texts` as one large_string Arrow array; a null text is refused with its position."""
    array = texts if isinstance(texts, pa.Array | pa.ChunkedArray) else pa.array(texts, pa.large_string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    if array.null_count:
        raise ValueError(f"cannot embed a null text (position {pc.index(pc.is_null(array), True).as_py()})")
    return array


def as_text_list(texts: Texts) -> list[str]:
    """`texts` as a list of Python strings, for models that take nothing else."""
    if isinstance(texts, pa.Array | pa.ChunkedArray):
        return texts.to_pylist()
    return texts.tolist() if isinstance(texts, pd.Series) else list(texts)


class FitFreeEmbedder:
    """A row's vector depends on its text alone: refreshes and cluster parts embed independently. Subclasses set
    `name`, `dim`, `chunk_rows`, `load()` (the model, loaded once) and `_encode(chunk: pa.Array) -> (len(chunk),
    dim) float32`; `threads` chunks are encoded at once (the encoder must release the GIL to gain from it)."""

    fitted = True
    threads = 1
    name: str
    dim: int
    chunk_rows: int

    def load(self):
        raise NotImplementedError

    def _encode(self, chunk: pa.Array) -> np.ndarray:
        raise NotImplementedError

    def fit(self, texts: Texts, log: Log = no_log) -> FitFreeEmbedder:
        return self

    def fit_embed(self, texts: Texts, log: Log = no_log) -> np.ndarray:
        return self.embed(texts, log)

    def embed(self, texts: Texts, log: Log = no_log) -> np.ndarray:
        self.load()  # a missing model fails here, before any work, even for no texts
        texts = as_string_array(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.chunk_rows)

        def encode(start: int) -> int:
            part = texts.slice(start, self.chunk_rows)
            out[start : start + len(part)] = self._encode(part)
            return start + len(part)

        with ThreadPoolExecutor(min(self.threads, len(starts)) or 1) as pool:
            for done, end in enumerate(pool.map(encode, starts), 1):
                if len(starts) > 1:
                    log(f"embedded {end:,}/{len(texts):,} rows ({done}/{len(starts)} chunks)")
        return self._finish(out, log)

    def _finish(self, vectors: np.ndarray, log: Log) -> np.ndarray:
        """The encoded vectors as returned; a subclass may mend rows here (the static model's empty texts)."""
        return vectors
