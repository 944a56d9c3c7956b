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
) -> Choice:
    """Best candidate at the largest sample size.

    `accuracy`: highest cross-validated accuracy; candidates within `tie_tolerance` of the best are tied and the
    fastest at inference wins, because a point of noise is not worth a slower student on millions of rows.
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
    pick = tied.sort_values(["predict_rows_per_second", "cv_accuracy"], ascending=False).iloc[0]
    reason = (
        f"highest cross-validated accuracy vs the teacher at {int(pick.sample_size)} labels"
        + (f" among students predicting >= {min_rows_per_second:,.0f} rows/s" if criterion != "accuracy" else "")
        + (f"; fastest of {len(tied)} within {tie_tolerance:.1%} of the best" if len(tied) > 1 else "")
    )
    return Choice(
        candidate=str(pick.candidate),
        sample_size=int(pick.sample_size),
        cv_accuracy=float(pick.cv_accuracy),
        predict_rows_per_second=float(pick.predict_rows_per_second),
        criterion=criterion,
        reason=reason,
    )
