"""Asking the task's teacher through the warehouse cache, for the sample and for the cascade."""

import numpy as np
import pandas as pd

from scalellm_dagster.resources import TeacherResource, Warehouse
from scalellm_dagster.tasks_config import TaskSpec
from scalellm_dagster.teachers.runner import LabelingStats, label_with_cache


class TeacherSession:
    """One run's conversation with the teacher: every answer cached, every request in the ledger."""

    def __init__(self, task: TaskSpec, teacher: TeacherResource, warehouse: Warehouse, corpus: pd.DataFrame,
                 matrix: np.ndarray | None, run_id: str, log):
        self.model = teacher.build(task, corpus, matrix)
        self.teacher, self.warehouse, self.log = teacher, warehouse, log
        self.texts = corpus.set_index("id")["text"]
        self.key = {"provider": self.model.provider, "model": self.model.model,
                    "prompt_version": self.model.prompt_version, "task": task.name, "run_id": run_id}
        self.stats = LabelingStats()
        self.answers: list[pd.DataFrame] = []
        warehouse.ensure_cache_tables()

    @property
    def name(self) -> str:
        return f"{self.model.provider}:{self.model.model}"

    def ask(self, ids) -> pd.DataFrame:
        rows = self.texts.loc[np.asarray(ids)].rename("text").reset_index()
        key = self.key
        out, stats = label_with_cache(
            self.model, rows,
            lookup=lambda hashes: self.warehouse.cached_answers(key["provider"], key["model"],
                                                                key["prompt_version"], hashes),
            store=lambda answered, ledger: self.warehouse.store_answers(key, answered, ledger),
            batch_size=self.teacher.batch_size, concurrency=self.teacher.concurrency, log=self.log,
        )
        self.stats.add(stats)
        self.answers.append(out)
        return out

    def ask_labels(self, ids) -> list:
        return self.ask(ids)["teacher_label"].tolist()
