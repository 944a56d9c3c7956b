"""The `simulated_hard` answers as computed before issue #47 (commit 14d0ce7), kept verbatim as the oracle the
faster computation (stored vectors, sparse centroid sums, DuckDB's SHA-256) is compared with: the simulation's
answers must not move."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from scalellm_dagster.teachers.simulated import error_draw
from scalellm_dagster.teachers.simulated_hard import HardAnswers, _row_standardised, label_texts

BLOCK = 65_536


def _draw(texts: Sequence[str], seed: int, salt: str) -> np.ndarray:
    return np.array([error_draw(f"{salt}\x00{text}", seed) for text in texts])


def hard_answers_before_47(
    texts: Sequence[str],
    gold: Sequence[str],
    task_labels: dict[str, str],
    embed,
    accuracy: float,
    seed: int = 0,
    lean: float = 0.0,
    jitter: float = 0.4,
    vectors: np.ndarray | None = None,
) -> HardAnswers:
    """The simulation's answer for every row of a corpus. `embed(list of texts) -> L2-normalised vectors` of the
    static embedder; `vectors`: the rows' static vectors when the caller holds them already (benchmarks)."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"simulated_hard teacher accuracy must be in [0, 1], got {accuracy}")
    if not 0.0 <= lean <= 1.0:
        raise ValueError(f"simulated_hard teacher lean (SCALELLM_SIMULATED_BIAS) must be in [0, 1], got {lean}")
    texts = [str(t) for t in texts]
    names = list(task_labels)
    code = pd.Categorical(np.asarray(gold, dtype=object), categories=names).codes.astype(np.int64)
    n, k = len(texts), len(names)
    if n == 0 or k < 2:
        answers = np.asarray(gold, dtype=object)
        return HardAnswers(answers, np.zeros(n, bool), np.zeros(n), np.zeros(n))
    known = code >= 0
    label_vectors = embed(label_texts(task_labels))
    if vectors is None and n <= BLOCK:  # one block: embed it once for both passes
        vectors = embed(texts)

    def rows_embedded(start: int) -> np.ndarray:
        if vectors is not None:
            return vectors[start : start + BLOCK]
        return embed(texts[start : start + BLOCK])

    blocks = range(0, n, BLOCK)
    sums, counts = np.zeros((k, label_vectors.shape[1])), np.bincount(code[known], minlength=k)
    for start in blocks:  # pass 1: the class centroids
        block, codes = rows_embedded(start), code[start : start + BLOCK]
        np.add.at(sums, codes[codes >= 0], block[codes >= 0])
    centroids = sums / np.maximum(counts, 1)[:, None]
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12

    zero_shot_margin, example_margin = np.zeros(n), np.zeros(n)
    confused_with = np.zeros(n, dtype=np.int64)
    for start in blocks:  # pass 2: each row's margins, and the label it is confused with
        block = rows_embedded(start)
        rows = slice(start, start + len(block))
        zs, ex = _row_standardised(block @ label_vectors.T), _row_standardised(block @ centroids.T)
        own = np.clip(code[rows], 0, None)
        at = np.arange(len(block))
        for scores, margin in ((zs, zero_shot_margin), (ex, example_margin)):
            others = scores.copy()
            others[at, own] = -np.inf
            margin[rows] = scores[at, own] - others.max(axis=1)
        both = zs + ex
        both[at, own] = -np.inf
        confused_with[rows] = both.argmax(axis=1)

    wordiness = rankdata([len(t.split()) for t in texts])  # fewer words: less for any model to go on
    difficulty = 1.0 - (rankdata(zero_shot_margin) + rankdata(example_margin) + wordiness) / (3 * n)
    hardness = (1 - jitter) * difficulty + jitter * _draw(texts, seed, "hard")
    wrong = np.zeros(n, dtype=bool)
    n_wrong = int(round((1 - accuracy) * known.sum()))
    if n_wrong:
        order = np.argsort(-np.where(known, hardness, -np.inf), kind="stable")
        wrong[order[:n_wrong]] = True
    most_frequent = np.argsort(-counts, kind="stable")[:2]
    frequent = np.where(code == most_frequent[0], most_frequent[1], most_frequent[0])
    leans = _draw(texts, seed, "lean") < lean
    wrong_code = np.where(leans, frequent, confused_with)
    answers = np.asarray(gold, dtype=object).copy()
    answers[wrong] = np.asarray(names, dtype=object)[wrong_code[wrong]]
    return HardAnswers(answers, wrong, hardness, difficulty)
