"""`simulated`: a stand-in for an LLM teacher, answering from a gold-label column. Not an LLM.

It exists so the pipeline runs offline and so budgets and students can be studied at a known teacher accuracy.
It errs like a model rather than like a coin: a wrong answer is the class whose centroid lies nearest the row's
embedding among the other classes, and whether a row is answered wrongly depends only on (seed, text), so the
same text always gets the same answer, as an LLM at temperature 0 would.

A real small LLM errs more systematically still: SmolLM2-135M gives one label to about half the rows whatever they
say (BENCHMARKS.md, "A real teacher"). `bias` reproduces that: that share of the wrong answers goes to one
favoured label (the first label in the task's order), the rest to the nearest other class. Errors a student cannot
average out make the simulation less kind; `bias=0` is the unbiased simulation every older figure used. With two
labels it changes nothing (the one wrong label is always "the other"): there, a real LLM's bias shows in *which* rows
it gets wrong, which this simulation does not model.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
from scipy import sparse

from scalellm_dagster.core.cost_estimate import CHARS_PER_TOKEN
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.base import Answer, BatchResult
from scalellm_dagster.teachers.prompts import PromptedTeacher, system_prompt, user_prompt

CHUNK = 65_536


Blocks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]  # a fresh iterator of (ids, vectors) per call


def nearest_other_class(embeddings: np.ndarray, gold: np.ndarray, labels: list[str]) -> np.ndarray:
    """For each row, the label (other than its gold one) whose class centroid is most similar to the row."""
    positions = np.arange(len(gold))
    blocks = lambda: ((positions[s : s + CHUNK], embeddings[s : s + CHUNK]) for s in range(0, len(gold), CHUNK))
    return nearest_other_class_streamed(blocks, pd.Series(gold, index=positions), labels).to_numpy(dtype=object)


def nearest_other_class_streamed(blocks: Blocks, gold_by_id: pd.Series, labels: list[str]) -> pd.Series:
    """The same, reading the vectors block by block twice (class centroids, then nearest other class), so a
    corpus of any size needs only one block in memory. Returns the label by id."""
    gold_by_id = gold_by_id.astype(object)
    present = [lab for lab in labels if (gold_by_id == lab).any()]
    if len(present) < 2:
        return gold_by_id.copy()
    code_by_id = pd.Series(pd.Categorical(gold_by_id, categories=present).codes, index=gold_by_id.index)
    sums, counts = None, np.zeros(len(present))
    for ids, vectors in blocks():
        codes = code_by_id.reindex(ids).fillna(-1).to_numpy(dtype=np.int64)
        known = codes >= 0
        if sums is None:
            sums = np.zeros((len(present), vectors.shape[1]))
        members = sparse.csr_matrix(
            (np.ones(int(known.sum())), (codes[known], np.flatnonzero(known))), shape=(len(present), len(vectors))
        )
        sums += members @ vectors
        counts += np.bincount(codes[known], minlength=len(present))
    centroids = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
    names = np.asarray(present, dtype=object)
    out = []
    for ids, vectors in blocks():
        sims = vectors @ centroids.T
        own = code_by_id.reindex(ids).fillna(-1).to_numpy(dtype=np.int64)
        has_own = own >= 0
        sims[np.flatnonzero(has_own), own[has_own]] = -np.inf
        out.append(pd.Series(names[sims.argmax(axis=1)], index=ids))
    return pd.concat(out) if out else pd.Series(dtype=object)


def error_draw(text: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimulatedTeacher(PromptedTeacher):
    provider = "simulated"

    def __init__(
        self,
        task: TaskSpec,
        gold_by_key: dict[str, str],
        confusion_by_key: dict[str, str],
        accuracy: float = 0.9,
        latency_ms: float = 0.0,
        seed: int = 0,
        *,
        price_in_per_mtok: float = 0.0,
        price_out_per_mtok: float = 0.0,
        bias: float = 0.0,
    ):
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"simulated teacher accuracy must be in [0, 1], got {accuracy}")
        if not 0.0 <= bias <= 1.0:
            raise ValueError(f"simulated teacher bias must be in [0, 1], got {bias}")
        self.bias = bias
        self.favoured = task.label_names[0]
        self.task = task
        self.gold = gold_by_key
        self.confusion = confusion_by_key
        self.accuracy = accuracy
        self.latency_ms = latency_ms
        self.seed = seed
        self.model = f"simulated-acc{accuracy:.3f}-seed{seed}" + (f"-bias{bias:.2f}" if bias else "")
        self._prices = (price_in_per_mtok, price_out_per_mtok)
        self._system = system_prompt(task)

    @classmethod
    def from_corpus(
        cls, task: TaskSpec, ids: pd.Series, gold: pd.Series, embeddings: np.ndarray | Blocks, **kwargs
    ) -> SimulatedTeacher:
        """`embeddings`: row-aligned with `ids`, or a callable giving (ids, vectors) blocks (any order)."""
        keys = ids.astype(str).to_numpy()
        gold_arr = gold.astype(object).to_numpy()
        if callable(embeddings):
            by_id = nearest_other_class_streamed(
                embeddings, pd.Series(gold_arr, index=ids.to_numpy()), task.label_names
            )
            confusion = by_id.reindex(ids.to_numpy()).to_numpy(dtype=object)
        else:
            confusion = nearest_other_class(embeddings, gold_arr, task.label_names)
        return cls(task, dict(zip(keys, gold_arr)), dict(zip(keys, confusion)), **kwargs)

    def answer(self, key: str, text: str) -> str:
        gold = self.gold[key]
        draw = error_draw(text, self.seed)
        if draw < self.accuracy:
            return gold
        # the same draw decides which kind of error, so a text keeps its answer
        wrong_share = (draw - self.accuracy) / max(1 - self.accuracy, 1e-12)
        favoured = self.favoured if self.favoured != gold else self.confusion[key]
        return favoured if wrong_share < self.bias else self.confusion[key]

    def label_batch(self, rows: list[tuple[str, str]]) -> BatchResult:
        start = time.perf_counter()
        answers = {}
        for key, text in rows:
            label = self.answer(key, text)
            answers[key] = Answer(label=label if label in self.task.labels else None, raw=str(label))
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        # Token counts are estimated (~4 characters a token) so the ledger shows what a real model would bill.
        prompt_chars = len(self._system) + len(user_prompt(rows))
        completion_chars = sum(len(k) + len(a.raw) + 24 for k, a in answers.items())
        return BatchResult(
            answers=answers,
            prompt_tokens=prompt_chars // CHARS_PER_TOKEN,
            completion_tokens=completion_chars // CHARS_PER_TOKEN,
            seconds=time.perf_counter() - start,
            tokens_estimated=True,
        )
