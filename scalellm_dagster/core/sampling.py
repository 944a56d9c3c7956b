"""Choosing which rows the teacher labels."""

from __future__ import annotations

import numpy as np
import pandas as pd


def sampling_priority(ids: pd.Series | np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random rank for each id that depends only on (seed, id).

    Ranking by it makes samples nested and stable: a bigger budget extends the smaller sample, and rows added to
    the corpus later do not reshuffle the rows already chosen, so the teacher's cached answers keep being used.
    """
    # pandas' hash_key only salts object arrays, so the seed is mixed in afterwards (splitmix64 finaliser).
    x = pd.util.hash_pandas_object(pd.Series(ids), index=False).to_numpy()
    with np.errstate(over="ignore"):  # wrap-around is the point of the mixing
        x = x + np.full_like(x, seed) * np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def random_sample(ids: pd.Series | np.ndarray, budget: int, seed: int = 0) -> np.ndarray:
    """The paper's uniform random sample of `budget` ids, in sampling order (prefixes are smaller samples)."""
    ids = np.asarray(ids)
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    order = np.argsort(sampling_priority(ids, seed), kind="stable")
    return ids[order[: min(budget, len(ids))]]
