"""`simulated`: a stand-in for an LLM teacher, answering from a gold-label column. Not an LLM.

It exists so the pipeline runs offline and so budgets and students can be studied at a known teacher accuracy.
It errs like a model rather than like a coin: a wrong answer is the class whose centroid lies nearest the row's
embedding among the other classes, and whether a row is answered wrongly depends only on (seed, text), so the
same text always gets the same answer, as an LLM at temperature 0 would.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pandas as pd

from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.base import Answer, BatchResult
from scalellm_dagster.teachers.prompts import prompt_version, system_prompt, user_prompt


def nearest_other_class(embeddings: np.ndarray, gold: np.ndarray, labels: list[str]) -> np.ndarray:
    """For each row, the label (other than its gold one) whose class centroid is most similar to the row."""
    present = [lab for lab in labels if (gold == lab).any()]
    if len(present) < 2:
        return np.array(gold, dtype=object)
    centroids = np.stack([embeddings[gold == lab].mean(axis=0) for lab in present]).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
    index = {lab: i for i, lab in enumerate(present)}
    out = np.empty(len(gold), dtype=object)
    for start in range(0, len(gold), 65536):  # chunked: n x classes similarities stay small
        sims = embeddings[start : start + 65536] @ centroids.T
        own = np.array([index.get(g, -1) for g in gold[start : start + 65536]])
        has_own = own >= 0
        sims[np.flatnonzero(has_own), own[has_own]] = -np.inf
        out[start : start + 65536] = np.asarray(present, dtype=object)[sims.argmax(axis=1)]
    return out


def error_draw(text: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimulatedTeacher:
    provider = "simulated"

    def __init__(
        self,
        task: TaskSpec,
        gold_by_key: dict[str, str],
        confusion_by_key: dict[str, str],
        accuracy: float = 0.9,
        latency_ms: float = 0.0,
        seed: int = 0,
        price_in_per_mtok: float = 0.0,
        price_out_per_mtok: float = 0.0,
    ):
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"simulated teacher accuracy must be in [0, 1], got {accuracy}")
        self.task = task
        self.gold = gold_by_key
        self.confusion = confusion_by_key
        self.accuracy = accuracy
        self.latency_ms = latency_ms
        self.seed = seed
        self.model = f"simulated-acc{accuracy:.3f}-seed{seed}"
        self._prices = (price_in_per_mtok, price_out_per_mtok)
        self._system = system_prompt(task)

    @classmethod
    def from_corpus(
        cls, task: TaskSpec, ids: pd.Series, gold: pd.Series, embeddings: np.ndarray, **kwargs
    ) -> SimulatedTeacher:
        keys = ids.astype(str).to_numpy()
        gold_arr = gold.astype(object).to_numpy()
        confusion = nearest_other_class(embeddings, gold_arr, task.label_names)
        return cls(task, dict(zip(keys, gold_arr)), dict(zip(keys, confusion)), **kwargs)

    @property
    def prompt_version(self) -> str:
        return prompt_version(self.task)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self._prices[0] + completion_tokens * self._prices[1]) / 1e6

    def label_batch(self, rows: list[tuple[str, str]]) -> BatchResult:
        start = time.perf_counter()
        answers = {}
        for key, text in rows:
            gold = self.gold[key]
            label = gold if error_draw(text, self.seed) < self.accuracy else self.confusion[key]
            answers[key] = Answer(label=label if label in self.task.labels else None, raw=str(label))
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        # Token counts are estimated (~4 characters a token) so the ledger shows what a real model would bill.
        prompt_chars = len(self._system) + len(user_prompt(rows))
        completion_chars = sum(len(k) + len(a.raw) + 24 for k, a in answers.items())
        return BatchResult(
            answers=answers,
            prompt_tokens=prompt_chars // 4,
            completion_tokens=completion_chars // 4,
            seconds=time.perf_counter() - start,
            tokens_estimated=True,
        )
