"""Which shard a row belongs to: a stable function of its id, so a row stays in its shard across refreshes."""

from __future__ import annotations

import numpy as np
import pandas as pd


def shard_keys(shards: int) -> list[str]:
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    return [f"{k:03d}" for k in range(shards)]


def shard_of(ids: pd.Series | np.ndarray, shards: int) -> np.ndarray:
    """Shard number of each id. Hashing the id's text (not its position) keeps the assignment independent of row
    order and of rows added or removed elsewhere; pandas' hash is stable across processes and runs."""
    hashed = pd.util.hash_pandas_object(pd.Series(np.asarray(ids)).astype(str), index=False).to_numpy()
    return (hashed % np.uint64(shards)).astype(np.int64)


def shard_positions(ids: pd.Series | np.ndarray, shard: int, shards: int) -> np.ndarray:
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is outside 0..{shards - 1}")
    return np.flatnonzero(shard_of(ids, shards) == shard)


def share_of_budget(budget: int, shard: int, shards: int) -> int:
    """An even split of a row budget across shards (the first ones take the remainder)."""
    return budget // shards + (1 if shard < budget % shards else 0)
