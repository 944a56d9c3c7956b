"""Step 1b: the sample's suspect teacher labels, and what the task does with them (`suspect_labels`).

A reference student scores every labelled row out of fold (trained without that row); confident learning
(`core.teacher_noise`, cleanlab) flags the labels it finds implausible. Then, by the task's policy:

- `keep`   (default) flag and list them; train on every label;
- `reask`  ask the teacher about each suspect again, one row per request (a batched prompt is where a real LLM
           errs most: BENCHMARKS.md, "Rows per request"); the second answer replaces the first when it is valid;
- `drop`   leave them out of training; the rows keep the teacher's label in the predictions.

The flags come from a student, not from the truth: with a weak student many are false alarms (BENCHMARKS.md,
"Suspect teacher labels", measures what each policy does to accuracy vs gold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalellm_dagster.core.students import out_of_fold
from scalellm_dagster.core.teacher_noise import TeacherNoise, estimate_teacher_noise
from scalellm_dagster.flow.session import TeacherSession
from scalellm_dagster.tasks_config import TaskSpec

# Probabilistic, quick (BENCHMARKS.md, suspect labels) and the same for every task, so flags do not depend on
# which candidate later wins.
REFERENCE_STUDENT = "logistic_regression"
REASK_PROMPT_SUFFIX = "+one-row-reask"  # a different question than the batched one: its own cache entries


@dataclass(frozen=True)
class SuspectReview:
    """The sample's answers with `suspect`, `suspect_student_label`, `suspect_student_score`, `first_label`
    (the teacher's first answer), `reasked` and `train` (used to train students) added."""

    answers: pd.DataFrame
    policy: str
    noise: TeacherNoise
    reasked: int = 0
    changed_by_reask: int = 0
    note: str = ""

    @property
    def flagged(self) -> int:
        return int(self.answers["suspect"].sum())

    @property
    def dropped(self) -> int:
        return int((self.answers["valid"] & ~self.answers["train"]).sum())


def flag_suspects(X: np.ndarray, y: np.ndarray, task: TaskSpec) -> TeacherNoise:
    """The labels `y` the reference student, trained without each, finds implausible (confident learning)."""
    if len(np.unique(y)) < 2 or len(y) < 2 * task.cv_folds:  # nothing a student could be trained to judge with
        return TeacherNoise(
            0.0, np.zeros(len(y), bool), y.copy(), np.zeros(len(y)), "not estimated: too few valid labels or classes"
        )
    return estimate_teacher_noise(y, out_of_fold(REFERENCE_STUDENT, X, y, task.cv_folds, task.seed))


def review_suspects(
    answers: pd.DataFrame,
    X_valid: np.ndarray,
    task: TaskSpec,
    reask_session: Callable[[], TeacherSession] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> SuspectReview:
    """`answers`: the labelled sample (id, teacher_label, valid, ...); `X_valid`: the vectors of its valid rows,
    in their order. `reask_session` builds the one-row-per-request session the `reask` policy asks with."""
    valid = answers["valid"].to_numpy(dtype=bool)
    noise = flag_suspects(X_valid, answers.loc[valid, "teacher_label"].to_numpy(), task)
    out = answers.assign(
        suspect=False,
        suspect_student_label=None,
        suspect_student_score=np.nan,
        first_label=answers["teacher_label"],
        reasked=False,
        train=valid,
    )
    rows = out.index[valid]
    out.loc[rows, "suspect"] = noise.suspect
    out.loc[rows[noise.suspect], "suspect_student_label"] = noise.student_label[noise.suspect]
    out.loc[rows[noise.suspect], "suspect_student_score"] = noise.student_confidence[noise.suspect]
    suspects = out.index[out["suspect"]]
    log(
        f"suspect teacher labels: {len(suspects):,} of {valid.sum():,} flagged ({noise.method}); policy "
        f"{task.suspect_labels!r}"
    )
    if task.suspect_labels == "drop":
        out.loc[suspects, "train"] = False
        return SuspectReview(out, "drop", noise, note=f"{len(suspects):,} suspect labels left out of training")
    if task.suspect_labels != "reask" or not len(suspects):
        return SuspectReview(out, task.suspect_labels, noise)
    if reask_session is None:  # the first question was already one row per request: it would be asked again as is
        return SuspectReview(
            out,
            "reask",
            noise,
            note="not re-asked: the teacher already asks one row per request, "
            "and the same prompt gets the same answer at temperature 0",
        )
    second = reask_session().ask(out.loc[suspects, "id"].to_numpy()).set_index("id")
    got = second.loc[out.loc[suspects, "id"]]
    answered = got["valid"].to_numpy(dtype=bool)
    changed = answered & (got["teacher_label"].to_numpy() != out.loc[suspects, "teacher_label"].to_numpy())
    out.loc[suspects, "reasked"] = True
    out.loc[suspects[answered], "teacher_label"] = got.loc[answered, "teacher_label"].to_numpy()
    out.loc[suspects[answered], "raw_answer"] = got.loc[answered, "raw_answer"].to_numpy()
    note = (
        f"{len(suspects):,} suspects re-asked one row per request: {int(changed.sum()):,} answers changed, "
        f"{int(answered.sum() - changed.sum()):,} confirmed, {int((~answered).sum()):,} without a valid second "
        "answer (first kept)"
    )
    log(note)
    return SuspectReview(out, "reask", noise, reasked=len(suspects), changed_by_reask=int(changed.sum()), note=note)
