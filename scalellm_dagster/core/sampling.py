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


def cluster_stratified_sample(
    ids, X: np.ndarray, budget: int, seed: int = 0, n_clusters: int | None = None, max_fit_rows: int = 50_000
) -> np.ndarray:
    """Diversity: k-means on the embeddings, the budget spread over clusters in proportion to their size.

    Rows are ordered so that every prefix is itself spread over the clusters (a row's position is its rank within
    its cluster divided by the cluster's share), so smaller sample sizes stay stratified too.
    """
    from sklearn.cluster import MiniBatchKMeans

    ids = np.asarray(ids)
    budget = min(budget, len(ids))
    k = n_clusters or int(np.clip(budget // 10, 2, 64))
    k = min(k, len(ids))
    rng = np.random.default_rng(seed)
    fit_rows = X if len(X) <= max_fit_rows else X[rng.choice(len(X), max_fit_rows, replace=False)]
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096).fit(fit_rows)
    cluster = km.predict(X)
    priority = sampling_priority(ids, seed)
    order = np.lexsort((priority, cluster))  # by cluster, then pseudo-random within it
    sorted_cluster = cluster[order]
    starts = np.searchsorted(sorted_cluster, np.arange(k))
    rank_in_cluster = np.arange(len(ids)) - starts[sorted_cluster]
    share = np.bincount(cluster, minlength=k) / len(ids)
    position = (rank_in_cluster + 0.5) / np.maximum(share[sorted_cluster], 1e-12)
    return ids[order[np.argsort(position, kind="stable")][:budget]]


def uncertainty_sample(
    ids,
    X: np.ndarray,
    budget: int,
    ask,
    seed: int = 0,
    seed_fraction: float = 0.3,
    *,
    rounds: int = 4,
    pool_size: int = 50_000,
    log=lambda _m: None,
) -> np.ndarray:
    """Active learning: a random seed round, then rounds asking about the rows the student is least sure of.

    `ask(ids) -> labels` (None for invalid answers) is the teacher, called once per round. The student here is
    a logistic regression (fast and probabilistic); uncertainty is the margin between its two best classes.
    Returns ids in the order they were asked.
    """
    from sklearn.linear_model import LogisticRegression

    ids = np.asarray(ids)
    budget = min(budget, len(ids))
    chosen = list(random_sample(ids, max(2, int(budget * seed_fraction)), seed))
    labels = dict(zip(chosen, ask(np.asarray(chosen))))
    position = {v: i for i, v in enumerate(ids.tolist())}
    rng = np.random.default_rng(seed)
    per_round = int(np.ceil((budget - len(chosen)) / max(rounds, 1)))
    while len(chosen) < budget:
        known = [i for i in chosen if labels.get(i) is not None]
        y = np.array([labels[i] for i in known], dtype=object)
        taken = set(chosen)
        pool = np.array([i for i in ids if i not in taken])
        if len(pool) > pool_size:
            pool = rng.choice(pool, pool_size, replace=False)
        size = min(per_round, budget - len(chosen), len(pool))
        if len(np.unique(y)) < 2:  # cannot train yet: fall back to random rows
            picked = pool[:size]
        else:
            model = LogisticRegression(C=10.0, max_iter=1000).fit(X[[position[i] for i in known]], y)
            proba = model.predict_proba(X[[position[i] for i in pool]])
            top2 = np.sort(proba, axis=1)[:, -2:]
            margin = top2[:, 1] - top2[:, 0] if proba.shape[1] > 1 else top2[:, -1]
            picked = pool[np.argsort(margin, kind="stable")[:size]]
        labels.update(zip(picked.tolist(), ask(picked)))
        chosen.extend(picked.tolist())
        log(f"uncertainty sampling: {len(chosen):,}/{budget:,} rows labelled")
    return np.asarray(chosen)
