"""The model selection report: accuracy vs teacher labels, forecasts, and teacher cost vs a row-by-row baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalellm_dagster.core.learning_curve import fit_learning_curve
from scalellm_dagster.core.selection import Choice

FORECAST_MULTIPLIERS = (2, 4, 10)


@dataclass(frozen=True)
class TeacherSpend:
    """What the teacher cost for this task (all runs, from the ledger)."""

    rows_answered: int
    requests: int
    request_seconds: float
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool
    concurrency: int

    def baseline(self, corpus_rows: int) -> dict:
        """Asking the same teacher about every row, one row per request, at the same concurrency.

        An extrapolation from the measured mean request time and cost per answered row, not a measurement.
        """
        per_request = self.request_seconds / max(self.requests, 1)
        per_row_cost = self.cost_usd / max(self.rows_answered, 1)
        return {
            "teacher_calls": corpus_rows,
            "seconds": corpus_rows * per_request / max(self.concurrency, 1),
            "cost_usd": corpus_rows * per_row_cost,
            "extrapolated": True,
        }


def candidate_table(scores: pd.DataFrame, choice: Choice, budget: int) -> pd.DataFrame:
    """One row per candidate: accuracy at the largest size, speed, the fitted curve and its forecasts."""
    ok = scores[scores["status"] == "ok"]
    rows = []
    for name, group in scores.groupby("candidate", sort=False):
        good = ok[ok["candidate"] == name].sort_values("sample_size")
        last = good.iloc[-1] if len(good) else None
        curve = fit_learning_curve(good["sample_size"], good["cv_accuracy"]) if len(good) else None
        n_max = int(good["sample_size"].max()) if len(good) else budget
        row = {
            "candidate": name,
            "labels": n_max,
            "cv_accuracy": float(last.cv_accuracy) if last is not None else np.nan,
            "cv_std": float(last.cv_std) if last is not None else np.nan,
            "train_seconds": float(last.train_seconds) if last is not None else np.nan,
            "predict_rows_per_second": float(last.predict_rows_per_second) if last is not None else np.nan,
            "failures": int((group["status"] == "failed").sum()),
            "pruned": bool((group["status"] == "pruned").any()),
            "curve_alpha": curve.alpha if curve else np.nan,
            "curve_floor_error": curve.c if curve else np.nan,
            "curve_r2": curve.r2 if curve else np.nan,
        }
        for m in FORECAST_MULTIPLIERS:
            row[f"forecast_at_{m}x"] = float(np.clip(curve.accuracy_at(n_max * m), 0, 1)) if curve else np.nan
        row["chosen"] = name == choice.candidate
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["chosen", "cv_accuracy"], ascending=False).reset_index(drop=True)


def summary_markdown(task_name: str, choice: Choice, spend: TeacherSpend, corpus_rows: int,
                     teacher_label: str) -> str:
    base = spend.baseline(corpus_rows)
    ours_calls = spend.requests
    lines = [
        f"### {task_name}: chosen student **{choice.candidate}**",
        f"- {choice.reason}: cross-validated agreement with the teacher **{choice.cv_accuracy:.3f}**, "
        f"inference {choice.predict_rows_per_second:,.0f} rows/s.",
        f"- Teacher: {teacher_label}. Labelled {spend.rows_answered:,} of {corpus_rows:,} rows "
        f"({spend.rows_answered / max(corpus_rows, 1):.1%}) in {ours_calls:,} requests.",
        "",
        "| | ScaleLLM (this task) | row-by-row baseline (extrapolated) |",
        "|---|---:|---:|",
        f"| teacher requests | {ours_calls:,} | {base['teacher_calls']:,} |",
        f"| teacher time (s, at concurrency {spend.concurrency}) | "
        f"{spend.request_seconds / max(spend.concurrency, 1):,.1f} | {base['seconds']:,.1f} |",
        f"| teacher cost (USD{', tokens estimated' if spend.tokens_estimated else ''}) | "
        f"{spend.cost_usd:,.4f} | {base['cost_usd']:,.4f} |",
        "",
    ]
    return "\n".join(lines)
