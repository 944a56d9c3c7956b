"""What a refresh must recompute: rows keyed by id and the hash of their text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RefreshPlan:
    reuse: np.ndarray  # positions in the current rows whose stored result is still valid
    compute: np.ndarray  # positions in the current rows to (re)compute: new ids or changed texts
    removed: int  # stored rows whose id is gone from the current rows

    @property
    def summary(self) -> dict:
        return {
            "rows_reused": int(len(self.reuse)),
            "rows_computed": int(len(self.compute)),
            "rows_removed": int(self.removed),
        }


def plan_refresh(current: pd.DataFrame, stored: pd.DataFrame | None) -> RefreshPlan:
    """`current` and `stored` have columns id, text_hash; a stored row is reused when both match."""
    if stored is None or stored.empty:
        return RefreshPlan(np.zeros(0, int), np.arange(len(current)), 0 if stored is None else len(stored))
    merged = (
        current[["id", "text_hash"]]
        .reset_index(drop=True)
        .merge(stored[["id", "text_hash"]].rename(columns={"text_hash": "stored_hash"}), on="id", how="left")
    )
    same = (merged["stored_hash"] == merged["text_hash"]).to_numpy()
    removed = int((~stored["id"].isin(current["id"])).sum())
    return RefreshPlan(np.flatnonzero(same), np.flatnonzero(~same), removed)
