"""Choosing which rows the teacher labels."""

from __future__ import annotations

import numpy as np
import pandas as pd


def sampling_priority(ids: pd.Series | np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random rank for each id that depends only on (seed, id).

    Ranking by it makes samples nested and stable: a bigger budget extends the smaller sample, and rows added to
    the corpus later do not reshuffle the rows already chosen, so the teacher's cached answers keep being used.
    """
    key = f"scalellm{seed:08d}"[-16:]
    return pd.util.hash_pandas_object(pd.Series(ids), index=False, hash_key=key).to_numpy()


def random_sample(ids: pd.Series | np.ndarray, budget: int, seed: int = 0) -> np.ndarray:
    """The paper's uniform random sample of `budget` ids, in sampling order (prefixes are smaller samples)."""
    ids = np.asarray(ids)
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    order = np.argsort(sampling_priority(ids, seed), kind="stable")
    return ids[order[: min(budget, len(ids))]]
