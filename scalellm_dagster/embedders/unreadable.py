"""Texts no embedder can read: one shared fallback vector, whatever the embedder.

A text with no letter and no digit (emoji only, a zero-width space, punctuation) carries nothing a bag of words or
subwords can represent: LSA gives it a zero vector, a static embedder an unknown-token vector. Every embedder's
output for such a text, and any zero vector an embedder returns (LSA for a script its fit never saw), is replaced
by the same unit vector (a non-finite vector is a fault of the embedder and still fails the embeddings check),
so these rows are treated alike under every embedder and never fail the embeddings check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from scalellm_dagster.embedders.protocol import as_string_array

READABLE = r"[\p{L}\p{N}]"  # a letter or a digit, in any script (RE2, as Python's [^\W_])


def fallback_vector(dim: int) -> np.ndarray:
    return np.full(dim, 1 / np.sqrt(dim), dtype=np.float32) if dim else np.zeros(0, np.float32)


def with_fallback(texts: pd.Series, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vectors with the fallback in the unreadable rows, their positions). `vectors` is modified in place."""
    unreadable = ~pc.match_substring_regex(as_string_array(texts), READABLE).to_numpy(zero_copy_only=False)
    norms = np.linalg.norm(vectors, axis=1) if vectors.size else np.zeros(len(vectors))
    empty = norms < 1e-6  # the embedder knows nothing of the text; NaN is its fault and fails the check instead
    positions = np.flatnonzero(unreadable | empty)
    if len(positions):
        vectors[positions] = fallback_vector(vectors.shape[1])
    return vectors, positions
