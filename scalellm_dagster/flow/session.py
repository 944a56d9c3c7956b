"""A run's conversation with the teacher: every answer goes through a cache, every request into a ledger.

The cache is an interface, so the assets keep answers in the warehouse and the benchmark keeps them in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd

from scalellm_dagster.teachers.base import Answer, Teacher
from scalellm_dagster.teachers.runner import LabelingStats, label_with_cache


class AnswerCache(Protocol):
    def lookup(self, hashes: list[str]) -> dict[str, Answer]:
        """Answers already paid for, by text hash."""
        ...

    def store(self, answered: list[dict], ledger: list[dict]) -> None:
        """Persist answers and the ledger lines of the requests that paid for them, together."""
        ...


class MemoryCache:
    """An in-process cache (the benchmark's): answers live as long as the object."""

    def __init__(self):
        self.answers: dict[str, Answer] = {}
        self.ledger: list[dict] = []

    def lookup(self, hashes: list[str]) -> dict[str, Answer]:
        return {h: self.answers[h] for h in hashes if h in self.answers}

    def store(self, answered: list[dict], ledger: list[dict]) -> None:
        self.answers.update({a["text_hash"]: Answer(a["label"], a["raw_answer"]) for a in answered})
        self.ledger.extend(ledger)


class TeacherSession:
    """Asks `teacher` about rows by id (texts from `texts`, indexed by id), answers from `cache` first."""

    def __init__(
        self,
        teacher: Teacher,
        cache: AnswerCache,
        texts: pd.Series,
        batch_size: int,
        concurrency: int,
        log: Callable[[str], None] = lambda _msg: None,
        *,
        store_window: float = 1.0,
        batch=None,
    ):
        """`store_window`: seconds answers may wait before `cache.store` (0: each request's, before the next). A
        cache with a `journal` (the warehouse's) gets each request's answers there first, durably, at once.
        `batch` (a `teachers.batch_api.BatchRound`): rows go through the Batch API."""
        self.batch = batch
        self.teacher, self.cache, self.texts, self.log = teacher, cache, texts, log
        self.store_window = store_window
        self.batch_size, self.concurrency = batch_size, concurrency
        self.stats = LabelingStats()
        self.answers: list[pd.DataFrame] = []

    @property
    def name(self) -> str:
        return f"{self.teacher.provider}:{self.teacher.model}"

    def ask(self, ids) -> pd.DataFrame:
        """id, teacher_label, raw_answer, valid, from_cache for `ids`, in their order."""
        rows = self.texts.loc[np.asarray(ids)].rename("text").rename_axis("id").reset_index()
        out, stats = label_with_cache(
            self.teacher,
            rows,
            lookup=self.cache.lookup,
            store=self.cache.store,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            log=self.log,
            flush_seconds=self.store_window,
            flush_rows=1 if self.store_window <= 0 else 200,
            journal=getattr(self.cache, "journal", None),
            batch=self.batch,
        )
        self.stats.add(stats)
        self.answers.append(out)
        return out

    def ask_labels(self, ids) -> list:
        return self.ask(ids)["teacher_label"].tolist()

    def answers_for(self, ids) -> pd.DataFrame:
        """Every answer this session received for `ids`, in their order (the first answer where asked twice)."""
        return pd.concat(self.answers).drop_duplicates("id").set_index("id").loc[ids].reset_index()
