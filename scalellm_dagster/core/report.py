"""The model selection report: accuracy vs teacher labels, forecasts, and teacher cost vs a row-by-row baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalellm_dagster.core.cost_estimate import PromptSizes, estimate_labelling
from scalellm_dagster.core.learning_curve import FloorPrior, fit_learning_curve
from scalellm_dagster.core.selection import Choice, corpus_predict_seconds, cost_adjusted_accuracy

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
    # The prompt's sizes and the prices the dry-run estimate used: the baseline is priced by the same arithmetic
    prompt_sizes: PromptSizes | None = None
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    assumed_seconds_per_request: float = 0.0

    def baseline(self, corpus_rows: int) -> dict:
        """Asking the same teacher about every row, one row per request, at the same concurrency: the one baseline
        every surface shows (the dry-run estimate, the report, its summary and plots).

        Tokens and cost come from the prompt's sizes, with the instructions and labels sent again with every
        one-row request (`core.estimate.estimate_labelling`, as the dry run); time from the measured mean request
        latency (the assumed one before any request). An extrapolation, not a measurement.
        """
        per_request = self.request_seconds / self.requests if self.requests else self.assumed_seconds_per_request
        if self.prompt_sizes is None:  # a sample labelled before sizes were recorded: priced per answered row
            return {
                "teacher_calls": corpus_rows,
                "seconds": corpus_rows * per_request / max(self.concurrency, 1),
                "cost_usd": corpus_rows * self.cost_usd / max(self.rows_answered, 1),
                "extrapolated": True,
                "cost_basis": "cost per answered row in batches (no prompt sizes recorded; understates)",
            }
        e = estimate_labelling(
            self.prompt_sizes,
            corpus_rows,
            1,
            self.concurrency,
            per_request,
            self.price_in_per_mtok,
            price_out_per_mtok=self.price_out_per_mtok,
            label="row-by-row baseline",
        )
        return {
            "teacher_calls": corpus_rows,
            "seconds": e.seconds,
            "cost_usd": e.cost_usd,
            "extrapolated": True,
            "prompt_tokens": e.prompt_tokens,
            "completion_tokens": e.completion_tokens,
            "cost_basis": "one row per request, instructions and labels sent with each (as the dry run)",
        }


def candidate_table(
    scores: pd.DataFrame,
    choice: Choice,
    budget: int,
    floor: FloorPrior | None = None,
    corpus_rows: int = 0,
    seconds_per_point: float = 0.0,
) -> pd.DataFrame:
    """One row per candidate: accuracy at the largest size, speed and what predicting the whole corpus
    (`corpus_rows`) would take, the accuracy the selection weighs it with, the fitted curve and its forecasts (the
    curve's floor weighed with `floor`, the teacher's estimated unlearnable noise)."""
    ok = scores[scores["status"] == "ok"]
    rows = []
    for name, group in scores.groupby("candidate", sort=False):
        good = ok[ok["candidate"] == name].sort_values("sample_size")
        last = good.iloc[-1] if len(good) else None
        curve = fit_learning_curve(good["sample_size"], good["cv_accuracy"], floor) if len(good) else None
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
    table = pd.DataFrame(rows)
    speed = table["predict_rows_per_second"]
    table.insert(
        table.columns.get_loc("predict_rows_per_second") + 1,
        "corpus_predict_seconds",
        corpus_predict_seconds(speed, corpus_rows) if corpus_rows else np.nan,
    )
    table.insert(
        table.columns.get_loc("corpus_predict_seconds") + 1,
        "cost_adjusted_accuracy",
        cost_adjusted_accuracy(table, corpus_rows, seconds_per_point),
    )
    return table.sort_values(["chosen", "cv_accuracy"], ascending=False).reset_index(drop=True)


def summary_markdown(task_name: str, choice: Choice, spend: TeacherSpend, corpus_rows: int, teacher_label: str) -> str:
    base = spend.baseline(corpus_rows)
    ours_calls = spend.requests
    lines = [
        f"### {task_name}: chosen student **{choice.candidate}**",
        f"- {choice.reason}: cross-validated agreement with the teacher **{choice.cv_accuracy:.3f}**, "
        f"inference {choice.predict_rows_per_second:,.0f} rows/s"
        + (
            f" ({choice.corpus_predict_seconds:,.1f} s for all {corpus_rows:,} rows)."
            if np.isfinite(choice.corpus_predict_seconds)
            else "."
        ),
        f"- Teacher: {teacher_label}. Labelled {spend.rows_answered:,} of {corpus_rows:,} rows "
        f"({spend.rows_answered / max(corpus_rows, 1):.1%}) in {ours_calls:,} requests.",
        "",
        "| | ScaleLLM (this task) | row-by-row baseline (extrapolated) |",
        "|---|---:|---:|",
        f"| teacher requests | {ours_calls:,} | {base['teacher_calls']:,} |",
        f"| teacher time at concurrency {spend.concurrency} (s: summed request latency ÷ {spend.concurrency}) | "
        f"{spend.request_seconds / max(spend.concurrency, 1):,.1f} | {base['seconds']:,.1f} |",
        f"| teacher cost (USD{', tokens estimated' if spend.tokens_estimated else ''}) | "
        f"{spend.cost_usd:,.4f} | {base['cost_usd']:,.4f} |",
        "",
        f"Baseline: {base.get('cost_basis', 'one row per request')}; its time from this task's mean request "
        "latency. `labeled_sample` shows the same baseline in its dry-run estimate, and the wall time of its own "
        "labelling step (`labelling_step_wall_seconds`, which includes the cache and retries) beside the summed "
        "request latency (`teacher_request_seconds_summed`) and the time at concurrency compared here "
        "(`teacher_seconds_at_concurrency`).",
    ]
    return "\n".join(lines)
