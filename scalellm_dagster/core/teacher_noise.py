"""How much of the teacher's labelling no student can learn: confident learning (cleanlab) on out-of-fold scores.

A teacher label that the students, trained without it, find implausible is a likely teacher mistake. Mistakes that
do not follow from the text cannot be learned, so their share bounds from below the error *vs the teacher* that any
student keeps however many labels it gets: the learning curve's floor. (A teacher's systematic mistakes can be
learned and are not counted; the bound is conservative in that direction.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from scalellm_dagster.core.learning_curve import FloorPrior
from scalellm_dagster.core.students import OutOfFold

MIN_ROWS_PER_CLASS = 2  # cleanlab needs a few labels of a class to set its threshold
# Confident learning flags more than the teacher's mistakes (rows the student finds ambiguous): 4-10 points more
# where it was measured (BENCHMARKS.md, "Suspect teacher labels"). The floor's estimate subtracts the middle of that.
OVERCOUNT, OVERCOUNT_SD = 0.07, 0.03


@dataclass(frozen=True)
class TeacherNoise:
    rate: float  # share of the sample's teacher labels flagged as likely mistakes
    suspect: np.ndarray  # boolean per labelled row
    student_label: np.ndarray  # what the out-of-fold student said instead
    student_confidence: np.ndarray  # its score for that label
    method: str

    @property
    def flagged(self) -> int:
        return int(self.suspect.sum())

    def floor_prior(self) -> FloorPrior | None:
        """The learning curves' floor as an estimate: the flagged share less the measured over-count, with the
        flagged share's binomial error and the over-count's spread; None when nothing was estimated."""
        if not len(self.suspect) or self.method.startswith("not estimated"):
            return None
        rate, n = self.rate, len(self.suspect)
        return FloorPrior(max(rate - OVERCOUNT, 0.0), float(np.sqrt(rate * (1 - rate) / n + OVERCOUNT_SD**2)))


def estimate_teacher_noise(y: np.ndarray, oof: OutOfFold) -> TeacherNoise:
    """Flags with cleanlab's `find_label_issues` (prune by noise rate) over the out-of-fold class scores."""
    from cleanlab.filter import find_label_issues  # lazy: only the selection step needs it

    y = np.asarray(y)
    best = oof.scores.argmax(axis=1)
    student_label, student_conf = oof.classes[best], oof.scores[np.arange(len(y)), best]
    index = np.searchsorted(oof.classes, y)
    counts = np.bincount(index, minlength=len(oof.classes))
    suspect = np.zeros(len(y), dtype=bool)
    method = "cleanlab.find_label_issues(prune_by_noise_rate) on out-of-fold scores"
    # Classes with a single label give cleanlab nothing to calibrate on: their rows are judged with the others
    # removed from the problem, never flagged.
    keep_class = counts >= MIN_ROWS_PER_CLASS
    rows = keep_class[index]
    if keep_class.sum() >= 2 and rows.sum() > keep_class.sum():
        scores = oof.scores[np.ix_(rows, keep_class)]
        scores = scores / np.clip(scores.sum(axis=1, keepdims=True), 1e-12, None)
        remap = np.cumsum(keep_class) - 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cleanlab warns about small classes, which we handle above
            # n_jobs=1: its default forks a process pool, which deadlocks a process that already runs threads
            suspect[rows] = find_label_issues(remap[index[rows]], scores, filter_by="prune_by_noise_rate", n_jobs=1)
    else:
        method = "not estimated: fewer than two classes with two labels"
    return TeacherNoise(float(suspect.mean()) if len(y) else 0.0, suspect, student_label, student_conf, method)
