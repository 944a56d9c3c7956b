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
    corpus_predict_seconds: float = float("nan")  # predicting every corpus row at the measured speed


def corpus_predict_seconds(rows_per_second, corpus_rows: int):
    """Seconds to predict `corpus_rows` rows at each measured speed (NaN where none was measured)."""
    speed = pd.Series(rows_per_second, dtype=float)
    return (corpus_rows / speed.where(speed > 0)).to_numpy()


def cost_adjusted_accuracy(scores: pd.DataFrame, corpus_rows: int, seconds_per_point: float) -> pd.Series:
    """Accuracy less one point for every `seconds_per_point` seconds predicting the whole corpus would take;
    plain accuracy when `seconds_per_point` is 0 (inference cost ignored).

    The cost is counted in tenths of a point: speeds are timings that vary from run to run, and an unrounded cost
    of a few thousandths of a point would let that noise break exact accuracy ties, so reruns on the same labels
    could pick different students."""
    if seconds_per_point <= 0 or corpus_rows <= 0:
        return scores["cv_accuracy"]
    seconds = pd.Series(corpus_predict_seconds(scores["predict_rows_per_second"], corpus_rows), index=scores.index)
    points = (seconds.fillna(0) / seconds_per_point).round(1)
    return scores["cv_accuracy"] - points / 100


def choose_student(
    scores: pd.DataFrame,
    criterion: str = "accuracy",
    min_rows_per_second: float = 0.0,
    tie_tolerance: float = 0.005,
    speed_ratio: float = 10.0,
    corpus_rows: int = 0,
    *,
    seconds_per_point: float = 0.0,
) -> Choice:
    """Best candidate at the largest sample size.

    `accuracy`: highest cross-validated accuracy less the cost of predicting the whole corpus (`corpus_rows`) with
    it, one point per `seconds_per_point` seconds (0: cost ignored), so a slow student must earn its time, most on
    a large corpus. Candidates within `tie_tolerance` of the best are tied and the fastest at inference wins,
    because a point of noise is not worth a slower student on millions of rows. Tied students within `speed_ratio`
    of the fastest count as equally fast, and the most accurate of them wins.
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
    value = cost_adjusted_accuracy(pool, corpus_rows, seconds_per_point)
    tied = pool[value >= value.max() - tie_tolerance]
    # Speeds are timings: a first call can measure much slower than the next, so only a gap of an order of magnitude
    # (a linear student against a forest or an RBF SVM) decides;
    # among equally fast students the more accurate wins, then the name, so reruns pick the same student.
    fast = tied[tied["predict_rows_per_second"] * speed_ratio >= tied["predict_rows_per_second"].max()]
    pick = fast.assign(value=value).sort_values(["value", "candidate"], ascending=[False, True]).iloc[0]
    weighed = seconds_per_point > 0 and corpus_rows > 0
    reason = (
        f"highest cross-validated accuracy vs the teacher at {int(pick.sample_size):,} labels"
        + (f", less a point per {seconds_per_point:g} s of predicting all {corpus_rows:,} rows" if weighed else "")
        + (f" among students predicting >= {min_rows_per_second:,.0f} rows/s" if criterion != "accuracy" else "")
        + (
            f"; of {len(tied)} within {tie_tolerance:.1%} of the best, the most accurate of those within "
            f"{speed_ratio:g}x of the fastest's speed"
            if len(tied) > 1
            else ""
        )
    )
    return Choice(
        candidate=str(pick.candidate),
        sample_size=int(pick.sample_size),
        cv_accuracy=float(pick.cv_accuracy),
        predict_rows_per_second=float(pick.predict_rows_per_second),
        criterion=criterion,
        reason=reason,
        corpus_predict_seconds=float(corpus_predict_seconds([pick.predict_rows_per_second], corpus_rows)[0]),
    )
