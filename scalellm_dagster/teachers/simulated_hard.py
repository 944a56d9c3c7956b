"""`simulated_hard`: a simulation of an LLM teacher whose mistakes fall where a model's would. Not an LLM.

The `simulated` teacher's wrong answers land on rows picked by a hash, whatever their text: students average such
noise out, so what was proven against it was proven against the kindest teacher there is. A real LLM is wrong on the
hard rows (ambiguous or short texts, labels that mean nearly the same), the same way every time, and leans to some
labels. This simulation does that, still answering from the gold column at a chosen accuracy:

1. Its own reading of each row (the shipped static embedder, whatever embedder the students use) gives two margins
   of the gold label over the best other label: **zero-shot**, the row's similarity to each label's name and
   description (all an LLM has to go on), and **by example**, its similarity to each label's centroid in the corpus
   (labels whose rows look alike).
2. A row's difficulty is the mean of three ranks in the corpus: its two margins (smallest: hardest) and its length
   in words (shortest: hardest, less to go on). Its hardness blends that with a per-(seed, text) draw, weight
   `jitter` (default 0.4), so that difficulty makes an error likely, not certain.
3. The hardest `1 - accuracy` share of the corpus is answered wrongly: with the label that beats the gold one on the
   two similarities together (the one it is confused with) or, for a share `lean` of them, with the corpus's most
   frequent label.

Deterministic for a corpus, seed and settings: a text gets the same answer in every batch and run. The ranks and
centroids are the corpus's, so a refresh that changes the corpus can move a few borderline rows; answers already
asked are kept by the answer cache. Its measured error structure: BENCHMARKS.md, "A teacher whose mistakes look like
an LLM's".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.simulated import SimulatedTeacher, error_draw

BLOCK = 65_536  # rows embedded at a time: a corpus of any size needs one block of vectors in memory


@dataclass(frozen=True)
class HardAnswers:
    """What the simulation answers for each corpus row, and why (for tests and the benchmark's tables)."""

    answers: np.ndarray  # the label it gives, per row
    wrong: np.ndarray  # bool per row
    hardness: np.ndarray  # in [0, 1], with the jitter; the wrong rows are its top share
    difficulty: np.ndarray  # in [0, 1], the three ranks alone (no jitter)


def label_texts(task_labels: dict[str, str]) -> list[str]:
    """What the zero-shot reading compares a row with: each label's name in words, and its description."""
    out = []
    for name, desc in task_labels.items():
        words = name.replace("_", " ").replace("-", " ").strip(" ?")
        out.append(f"{words}: {desc}" if desc else words)
    return out


def _draw(texts: Sequence[str], seed: int, salt: str) -> np.ndarray:
    """A uniform number per (seed, salt, text): the same text always draws the same."""
    return np.array([error_draw(f"{salt}\x00{text}", seed) for text in texts])


def _row_standardised(scores: np.ndarray) -> np.ndarray:
    """Each row's similarities on a common scale, so the zero-shot and by-example readings weigh the same."""
    return (scores - scores.mean(axis=1, keepdims=True)) / (scores.std(axis=1, keepdims=True) + 1e-9)


def hard_answers(
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


@lru_cache(maxsize=1)
def _static_embedder():
    from scalellm_dagster.embedders.static import StaticEmbedder

    return StaticEmbedder(threads=1)  # loaded once a process: a teacher is built for every session


def static_embed(texts: list[str]) -> np.ndarray:
    return _static_embedder().embed(texts)


class HardRowsTeacher(SimulatedTeacher):
    """The `simulated_hard` kind: answers precomputed for the corpus by `hard_answers`."""

    provider = "simulated_hard"

    def __init__(self, task: TaskSpec, answer_by_key: dict[str, str], accuracy: float, lean: float = 0.0, **kwargs):
        super().__init__(task, {}, {}, accuracy=accuracy, **kwargs)
        self.answer_by_key = answer_by_key
        self.lean = lean
        self.model = f"simulated-hard-acc{accuracy:.3f}-seed{self.seed}" + (f"-lean{lean:.2f}" if lean else "")

    @classmethod
    def from_texts(
        cls,
        task: TaskSpec,
        ids: pd.Series,
        texts: pd.Series,
        gold: pd.Series,
        accuracy: float = 0.9,
        seed: int = 0,
        lean: float = 0.0,
        embed=static_embed,
        **kwargs,
    ) -> HardRowsTeacher:
        found = hard_answers(texts.tolist(), gold.astype(object).tolist(), task.labels, embed, accuracy, seed, lean)
        keys = ids.astype(str).tolist()
        return cls(task, dict(zip(keys, found.answers)), accuracy=accuracy, lean=lean, seed=seed, **kwargs)

    def answer(self, key: str, text: str) -> str:
        return self.answer_by_key[key]
