"""The Dagster UI's view of each flow step's result: metadata for the four task assets."""

from __future__ import annotations

import pandas as pd
from dagster import MetadataValue

from scalellm_dagster.assets.metadata import column_schema, figure_png, md_table, png_markdown, preview
from scalellm_dagster.core import plots
from scalellm_dagster.core.cascade import GuaranteedPlan
from scalellm_dagster.core.report import TeacherSpend, summary_markdown
from scalellm_dagster.core.teacher_noise import TeacherNoise
from scalellm_dagster.flow import Candidates, CascadeOutcome, Predicted, Selection, TeacherSession, TrainedStudent
from scalellm_dagster.flow.suspects import REFERENCE_STUDENT, SuspectReview
from scalellm_dagster.tasks_config import TaskSpec


def sample_metadata(
    task: TaskSpec,
    sample: pd.DataFrame,
    written: int,
    session: TeacherSession,
    simulated: bool,
    budget: int,
    budget_note: str,
    estimate: pd.DataFrame,
) -> dict:
    stats = session.stats
    valid = sample[sample["valid"]]
    coverage = valid["teacher_label"].value_counts()
    return {
        "dagster/row_count": written,
        "dagster/column_schema": column_schema(sample),
        "teacher": session.name + (" (simulation, not an LLM)" if simulated else ""),
        "sampling": task.sampling,
        "budget": budget,
        "budget_source": budget_note,
        "prompt_version": session.teacher.prompt_version,
        "structured_output": ", ".join(sorted(stats.response_formats))
        or ("none (simulation)" if simulated else "none (every answer from the cache)"),
        "valid_labels": int(len(valid)),
        "invalid_answers": int((~sample["valid"] & sample["raw_answer"].notna()).sum()),
        "unanswered_rows": int(sample["raw_answer"].isna().sum()),
        "answers_normalised": stats.normalised,
        "failed_requests": stats.failed_requests,
        "cache_hits": stats.cache_hits,
        "cache_misses": stats.asked,
        "teacher_requests": stats.requests,
        # Three times, each named for what it measures; the third is the one the baseline is compared with.
        "labelling_step_wall_seconds": MetadataValue.float(round(stats.wall_seconds, 3)),
        "teacher_request_seconds_summed": MetadataValue.float(round(stats.request_seconds, 3)),
        "teacher_seconds_at_concurrency": MetadataValue.float(
            round(stats.request_seconds / max(session.concurrency, 1), 3)
        ),
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "tokens_estimated": stats.tokens_estimated,
        "cost_usd": MetadataValue.float(round(stats.cost_usd, 6)),
        "classes_covered": f"{len(coverage)} of {len(task.labels)}",
        "label_counts": md_table(coverage.rename_axis("label").reset_index(name="rows"), max_rows=15),
        "preview": preview(sample[["id", "text", "teacher_label", "raw_answer", "valid", "from_cache"]]),
        # `limited_by` only says something when a rate limit, not latency, sets a time
        "estimate_before_calls": md_table(
            estimate.drop(columns="limited_by") if (estimate["limited_by"] == "latency").all() else estimate,
            floatfmt=".4f",
        ),
        # the same arithmetic as the report's baseline: one row per request, instructions sent with each
        "baseline_cost_usd_estimate": MetadataValue.float(round(float(estimate["cost_usd"].iloc[-1]), 6)),
        "notes": "; ".join(stats.notes) or "none",
    }


def kept_sample_metadata(decision, drawn, sample_rows: int, corpus_rows: int) -> dict:
    """A materialization that keeps the deployed model: what it kept and why, nothing asked of the teacher."""
    return {
        "model": "kept: the sample is the one drawn for the deployed model",
        "model_decision": decision.reason,
        "dagster/row_count": sample_rows,
        "drawn_at": f"{drawn.at:%Y-%m-%d %H:%M:%S} UTC" if drawn else "unknown",
        "corpus_rows_at_draw": drawn.corpus_rows if drawn else 0,
        "drawn_by_run": drawn.run_id if drawn else "",
        "corpus_rows_now": corpus_rows,
        "teacher_requests": 0,
        "to_replace_it": "launch the retrain_models job (tag scalellm/retrain=<task> for one task), or run "
        "`scalellm run --retrain <task>`",
    }


def candidates_metadata(result: Candidates, written: int) -> dict:
    scores = result.scores
    pivot = scores.pivot_table(index="candidate", columns="sample_size", values="cv_accuracy")
    pivot.columns = [f"acc@{c}" for c in pivot.columns]
    return {
        "dagster/row_count": written,
        "dagster/column_schema": column_schema(scores),
        "sample_sizes": str(result.sizes),
        "failed": int((scores["status"] == "failed").sum()),
        "pruned": int((scores["status"] == "pruned").sum()),
        "reused_stored_scores": result.reused,
        "seconds": MetadataValue.float(round(result.seconds, 2)),
        "accuracy_vs_teacher": md_table(pivot.reset_index()),
        "candidates": md_table(scores.drop(columns=["error"])),
    }


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


def suspect_metadata(review: SuspectReview, sample: pd.DataFrame, shown: int = 20) -> dict:
    """The sample's suspect teacher labels (most confident disagreement first) and the task's policy for them."""
    rows = sample[sample["suspect"]].sort_values("suspect_student_score", ascending=False)
    table = pd.DataFrame(
        {
            "id": rows["id"],
            "text": rows["text"].str.slice(0, 100),
            "teacher_label": rows["first_label"],
            "student_label": rows["suspect_student_label"],
            "student_score": rows["suspect_student_score"],
            **({"second_answer": rows["teacher_label"].where(rows["reasked"])} if review.policy == "reask" else {}),
            "used_for_training": rows["train"],
        }
    )
    return {
        "suspect_labels_policy": review.policy,
        "suspect_teacher_labels": review.flagged,
        "suspect_share": MetadataValue.float(round(review.noise.rate, 4)),
        "suspect_method": f"{review.noise.method}, reference student {REFERENCE_STUDENT}",
        "suspects_reasked": review.reasked,
        "suspect_answers_changed_by_reask": review.changed_by_reask,
        "suspects_left_out_of_training": review.dropped,
        "suspect_note": review.note or "flagged only; every valid label trains the students",
        "suspect_teacher_label_examples": md_table(table, max_rows=shown) if len(table) else "none",
    }


def cascade_metadata(task: TaskSpec, outcome: CascadeOutcome | None, out: pd.DataFrame) -> dict:
    if outcome is None:
        return {}
    plan = outcome.plan
    sample_calls = int((out["source"] == "teacher-sample").sum())
    return {
        "cascade_threshold": MetadataValue.float(round(plan.threshold, 4)),
        "cascade_target_agreement": task.cascade_target_agreement,
        "cascade_target_reached": plan.reached,
        "expected_agreement_without_cascade": MetadataValue.float(round(plan.expected_agreement_without, 4)),
        "expected_agreement_with_cascade": MetadataValue.float(round(plan.expected_agreement_with, 4)),
        "teacher_rows_without_cascade": sample_calls,
        "teacher_rows_with_cascade": sample_calls + int((out["source"] == "teacher-cascade").sum()),
        "cascade_requests": outcome.requests,
        **guarantee_metadata(outcome.guarantee),
    }


def guarantee_metadata(g: GuaranteedPlan | None) -> dict:
    if g is None:
        return {}
    missing = (
        (
            f"; {g.unanswered:,} rows sent got no valid answer (asked twice) and keep the student's label, "
            "counted as misses in the bound"
        )
        if g.unanswered
        else ""
    )
    if g.reached:
        statement = (
            f"with probability >= {1 - g.delta:.0%}, the labels of the rows the student would label agree "
            f"with the teacher on >= {g.guaranteed_agreement:.1%} of them"
        )
    elif g.rows_needed is None:  # the plan reached the target; unanswered rows took it below
        statement = (
            f"target {g.target:.1%} NOT certified: with probability >= {1 - g.delta:.0%} the agreement is "
            f">= {g.guaranteed_agreement:.1%}"
        )
    else:
        statement = (
            f"target {g.target:.1%} NOT certifiable within cascade_budget: it needs {g.rows_needed:,} "
            f"teacher rows; the budget certifies {g.guaranteed_agreement:.1%}"
        )
    split = (
        f"delta split over the {g.candidates} candidates the selection chose among on the same labels "
        f"(delta/{g.candidates} each), "
        if g.candidates > 1
        else ""
    )
    return {
        "cascade_delta": g.delta,
        "cascade_guarantee": statement + missing,
        "cascade_guaranteed_agreement": MetadataValue.float(round(g.guaranteed_agreement, 4)),
        "cascade_unanswered_rows": g.unanswered,
        "cascade_guarantee_assumes": g.assumption + f"; {g.calibration_rows:,} held-out labels, {split}"
        "Clopper-Pearson at delta/2 plus a binomial quantile at delta/2 for the kept "
        "rows, fixed-sequence testing over plans",
    }


def replacement_metadata(previous: set[str], version: str, before: pd.DataFrame | None, out: pd.DataFrame) -> dict:
    """What replacing the deployed model changed: versions, labels changed on the rows both models labelled, and
    how often the two students agree there."""
    if not previous or before is None:
        return {"model_update": f"first model: {version}"}
    both = out[["id", "label", "student_label"]].merge(before, on="id", suffixes=("", "_before"))
    changed = int((both["label"] != both["label_before"]).sum())
    agree = float((both["student_label"] == both["student_label_before"]).mean()) if len(both) else float("nan")
    return {
        "model_update": f"replaced: {', '.join(sorted(previous))} -> {version}; every row predicted again",
        "previous_model_version": ", ".join(sorted(previous)),
        "labels_changed": changed,
        "labels_changed_share": MetadataValue.float(round(changed / max(len(both), 1), 4)),
        "student_agreement_with_previous_model": MetadataValue.float(round(agree, 4)),
    }


def predictions_metadata(
    out: pd.DataFrame, written: int, student: TrainedStudent, predicted: Predicted, reused: int, extra: dict
) -> dict:
    return {
        "dagster/row_count": written,
        "dagster/column_schema": column_schema(out),
        "model": student.name,
        "confidence_method": predicted.method,
        "rows_predicted": int(len(predicted.labels)),
        "rows_reused": int(reused),
        "rows_from_teacher_sample": int((out["source"] == "teacher-sample").sum()),
        "rows_from_teacher_cascade": int((out["source"] == "teacher-cascade").sum()),
        "rows_from_student": int((out["source"] == "student").sum()),
        "train_seconds": MetadataValue.float(round(student.seconds, 3)),
        "predict_rows_per_second": MetadataValue.float(round(predicted.rows_per_second, 1)),
        "mean_confidence": MetadataValue.float(round(float(out["confidence"].mean()), 4)),
        **extra,
        "label_counts": md_table(
            out["label"].value_counts().rename_axis("label").reset_index(name="rows"), max_rows=15
        ),
        "preview": preview(out),
    }


def gold_metrics(out: pd.DataFrame, gold: pd.DataFrame | None) -> dict:
    """Accuracy against the gold column, when the task has one, on rows the teacher never saw."""
    if gold is None:
        return {}
    merged = out.merge(gold, on="id", how="left")
    from_teacher = (merged["source"] == "teacher-sample").to_numpy()
    unseen = merged[~from_teacher]
    seen = merged[from_teacher]
    acc = lambda frame, column: MetadataValue.float(round(float((frame[column] == frame["gold"]).mean()), 4))
    return {
        "student_acc_vs_gold_unseen": acc(unseen, "student_label"),
        "accuracy_vs_gold_unseen_rows": acc(unseen, "label"),
        "accuracy_vs_gold_teacher_rows": acc(seen, "label"),
        "accuracy_vs_gold_all_rows": acc(merged, "label"),
    }
