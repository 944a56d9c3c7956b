"""Picking the student from the candidates' scores."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


class NoViableStudentError(RuntimeError):
    pass


@dataclass(frozen=True)
class Choice:
    candidate: str
    sample_size: int
    cv_accuracy: float
    predict_rows_per_second: float
    criterion: str
    reason: str


def choose_student(
    scores: pd.DataFrame,
    criterion: str = "accuracy",
    min_rows_per_second: float = 0.0,
    tie_tolerance: float = 0.005,
    speed_ratio: float = 10.0,
) -> Choice:
    """Best candidate at the largest sample size.

    `accuracy`: highest cross-validated accuracy; candidates within `tie_tolerance` of the best are tied and the
    fastest at inference wins, because a point of noise is not worth a slower student on millions of rows. Tied
    students within `speed_ratio` of the fastest count as equally fast, and the most accurate of them wins.
    `accuracy_under_latency`: the same among candidates predicting at least `min_rows_per_second`.
    """
    ok = scores[scores["status"] == "ok"]
    if ok.empty:
        reasons = "; ".join(f"{r.candidate}@{r.sample_size}: {r.error}" for r in scores.itertuples())
        raise NoViableStudentError(f"every student candidate failed: {reasons}")
    at_max = ok[ok["sample_size"] == ok["sample_size"].max()]
    pool = at_max
    if criterion == "accuracy_under_latency":
        pool = at_max[at_max["predict_rows_per_second"] >= min_rows_per_second]
        if pool.empty:
            fastest = at_max["predict_rows_per_second"].max()
            raise NoViableStudentError(
                f"no candidate predicts at least {min_rows_per_second:,.0f} rows/s (fastest: {fastest:,.0f} rows/s); "
                "lower min_rows_per_second or use selection: accuracy"
            )
    elif criterion != "accuracy":
        raise ValueError(f"unknown selection criterion {criterion!r}")
    best = pool["cv_accuracy"].max()
    tied = pool[pool["cv_accuracy"] >= best - tie_tolerance]
    # Speeds are timings: a first call can measure 2x slower than the next, so only a gap of an order of magnitude
    # (a linear student against a forest or an RBF SVM) decides;
    # among equally fast students the more accurate wins, then the name, so reruns pick the same student.
    fast = tied[tied["predict_rows_per_second"] * speed_ratio >= tied["predict_rows_per_second"].max()]
    pick = fast.sort_values(["cv_accuracy", "candidate"], ascending=[False, True]).iloc[0]
    reason = (
        f"highest cross-validated accuracy vs the teacher at {int(pick.sample_size):,} labels"
        + (f" among students predicting >= {min_rows_per_second:,.0f} rows/s" if criterion != "accuracy" else "")
        + (f"; of {len(tied)} within {tie_tolerance:.1%} of the best, the most accurate of those within "
           f"{speed_ratio:g}x of the fastest's speed" if len(tied) > 1 else "")
    )
    return Choice(
        candidate=str(pick.candidate),
        sample_size=int(pick.sample_size),
        cv_accuracy=float(pick.cv_accuracy),
        predict_rows_per_second=float(pick.predict_rows_per_second),
        criterion=criterion,
        reason=reason,
    )
