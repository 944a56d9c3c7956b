"""The UI's view of a task's `model_selection_report`: the summary, the trade-off tables, the plots, the
teacher's noise."""

from __future__ import annotations

import pandas as pd
from dagster import MetadataValue

from scalellm_dagster.assets.metadata import column_schema, figure_png, md_table, png_markdown
from scalellm_dagster.core import plots
from scalellm_dagster.core.report import TeacherSpend, summary_markdown
from scalellm_dagster.core.teacher_noise import TeacherNoise
from scalellm_dagster.flow import Selection
from scalellm_dagster.tasks_config import TaskSpec


def report_summary(
    task: TaskSpec, selection: Selection, spend: TeacherSpend, corpus_rows: int, teacher_label: str
) -> str:
    summary = summary_markdown(task.name, selection.choice, spend, corpus_rows, teacher_label)
    advice = selection.advice
    if advice:
        summary += (
            f"\n**Budget advice** ({advice.reason}): **{advice.recommended_budget:,}** teacher labels, "
            f"forecast accuracy vs teacher {advice.forecast_accuracy:.3f}, teacher cost "
            f"${advice.teacher_cost_usd:,.4f}, teacher time {advice.teacher_seconds:,.1f} s"
            + (
                " — the next materialization tops the sample up to it (cached answers reused)."
                if task.follow_budget_advice
                else " — set it as the task's budget, or follow_budget_advice: true."
            )
        )
    return summary


def report_plots(
    task: TaskSpec,
    scores: pd.DataFrame,
    selection: Selection,
    spend: TeacherSpend,
    corpus_rows: int,
    reports_dir,
    *,
    teacher_vs_gold: float | None = None,
) -> dict:
    """The two plots, inline (markdown) and as files beside the warehouse."""
    out = {}
    base = spend.baseline(corpus_rows)
    for key, fig in (
        (
            "learning_curves",
            plots.learning_curves_figure(
                scores,
                selection.choice.candidate,
                f"{task.name}: accuracy vs teacher labels",
                forecast_to=corpus_rows,
                floor=selection.noise.floor_prior(),
            ),
        ),
        (
            "accuracy_vs_time",
            plots.tradeoff_figure(
                selection.table,
                spend.request_seconds / max(spend.concurrency, 1),
                corpus_rows,
                base["seconds"],
                f"{task.name}: accuracy vs time to label every row",
                teacher_vs_gold,
            ),
        ),
    ):
        png = figure_png(fig)
        plots.close(fig)
        path = reports_dir / f"{task.name}_{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        out[key] = png_markdown(png, key.replace("_", " "))
        out[f"{key}_png"] = MetadataValue.path(str(path))
    return out


def report_metadata(
    selection: Selection,
    report_table: pd.DataFrame,
    written: int,
    spend: TeacherSpend,
    corpus_rows: int,
    summary: str,
    *,
    per_run: pd.DataFrame,
    plot_meta: dict,
) -> dict:
    choice, advice = selection.choice, selection.advice
    base = spend.baseline(corpus_rows)
    return {
        "dagster/row_count": written,
        "dagster/column_schema": column_schema(report_table),
        "chosen_model": choice.candidate,
        "chosen_cv_accuracy_vs_teacher": MetadataValue.float(round(choice.cv_accuracy, 4)),
        "selection_criterion": choice.criterion,
        "teacher_rows": spend.rows_answered,
        "teacher_requests": spend.requests,
        "teacher_cost_usd": MetadataValue.float(round(spend.cost_usd, 6)),
        "teacher_seconds_at_concurrency": MetadataValue.float(
            round(spend.request_seconds / max(spend.concurrency, 1), 3)
        ),
        "baseline_requests": base["teacher_calls"],
        "baseline_seconds_extrapolated": MetadataValue.float(round(base["seconds"], 3)),
        "baseline_cost_usd_extrapolated": MetadataValue.float(round(base["cost_usd"], 6)),
        "recommended_budget": advice.recommended_budget if advice else "no target set",
        "summary": MetadataValue.md(summary),
        "candidates": md_table(selection.table),
        "cascade_tradeoff": md_table(selection.cascade_tradeoff, floatfmt=".4f"),
        "teacher_cost_by_run": md_table(per_run, floatfmt=".4f"),
        **plot_meta,
    }


def noise_metadata(noise: TeacherNoise) -> dict:
    """The share of teacher labels the chosen student, trained without them, finds implausible: the estimate
    behind the learning curves' floor. The rows themselves are listed on `labeled_sample`."""
    return {
        "teacher_noise_estimate": MetadataValue.float(round(noise.rate, 4)),
        "teacher_noise_method": noise.method + " (chosen student); the learning curves' floor error is bounded "
        "below by it. labeled_sample lists the suspect rows and what the task did with them",
    }
