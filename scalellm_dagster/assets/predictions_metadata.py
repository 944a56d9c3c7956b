"""The UI's view of a task's `predictions`: the rows, the model's replacement, the cascade and its guarantee,
accuracy vs gold."""

from __future__ import annotations

import pandas as pd
from dagster import MetadataValue

from scalellm_dagster.assets.metadata import column_schema, md_table, preview
from scalellm_dagster.core.cascade import GuaranteedPlan
from scalellm_dagster.flow import CascadeOutcome, Predicted, TrainedStudent
from scalellm_dagster.tasks_config import TaskSpec


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
